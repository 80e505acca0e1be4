"""One supplier's circuit breaker: closed, open, half-open, from failure and slow-call rates over a window.

Failures are what say the supplier is unwell (connect errors, timeouts, 5xx, unreadable or unknown
answers), never an account-side refusal. Each trip keeps it open longer, up to `max_open_for`;
healthy periods shorten it again. Half-open lets a few probes through, and a probe that never
reports back expires instead of holding the breaker half-open forever.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import IntEnum

from gateway.clock import Clock
from gateway.config.model import BreakerConfig
from gateway.health import CallWindow


class CircuitState(IntEnum):
    """Values of `gateway_supplier_circuit_state`."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Probe:
    """Permission for one call through a half-open breaker; report it with `record`."""

    __slots__ = ("generation", "started")

    def __init__(self, generation: int, started: float) -> None:
        self.generation = generation
        self.started = started


# A closed call needs no probe; `allow` returns this for it.
CLOSED_PASS = Probe(-1, 0.0)


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig,
        clock: Clock,
        rng: random.Random,
        *,
        probe_expiry_seconds: float,
        on_change: Callable[[CircuitState], None] = lambda state: None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._rng = rng
        self._probe_expiry = probe_expiry_seconds
        self._on_change = on_change
        self._window = CallWindow(config.window)
        self._state = CircuitState.CLOSED
        self._opened_until = 0.0
        self._trips = 0  # consecutive trips without a healthy period between them
        self._closed_since = clock.monotonic()
        self._generation = 0  # bumps on every state change, so stale probes are recognised
        self._probes: dict[int, Probe] = {}
        self._probe_ids = 0
        self._probe_successes = 0

    def reconfigure(self, config: BreakerConfig, *, probe_expiry_seconds: float) -> None:
        """New thresholds for a reloaded configuration; the state and its history carry over."""
        if config.window != self._config.window:
            self._window = CallWindow(config.window)
        self._config = config
        self._probe_expiry = probe_expiry_seconds

    @property
    def state(self) -> CircuitState:
        """The state now, moving open to half-open when its time is up."""
        if self._state is CircuitState.OPEN and self._clock.monotonic() >= self._opened_until:
            self._enter(CircuitState.HALF_OPEN)
        return self._state

    def open_remaining(self) -> float:
        """Seconds until an open breaker lets probes through (0 when not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(self._opened_until - self._clock.monotonic(), 0.0)

    def available(self) -> bool:
        """Whether a call could be let through now (without taking a probe)."""
        state = self.state
        if state is CircuitState.HALF_OPEN:
            self._expire_probes()
            return len(self._probes) < self._config.half_open_calls
        return state is CircuitState.CLOSED

    def allow(self) -> Probe | None:
        """Permission for one call, or None while open or while every probe is out."""
        state = self.state
        if state is CircuitState.CLOSED:
            return CLOSED_PASS
        if state is CircuitState.OPEN:
            return None
        self._expire_probes()
        if self._state is not CircuitState.HALF_OPEN or len(self._probes) >= self._config.half_open_calls:
            return None
        self._probe_ids += 1
        probe = Probe(self._generation, self._clock.monotonic())
        self._probes[self._probe_ids] = probe
        return probe

    def release(self, probe: Probe) -> None:
        """Hand back a permission that was never used: it says nothing about the supplier."""
        if probe is CLOSED_PASS:
            return
        for key, held in list(self._probes.items()):
            if held is probe:
                del self._probes[key]

    def record(self, probe: Probe, *, failed: bool, seconds: float, delivered: bool = False) -> None:
        """Report a call let through by `allow`."""
        now = self._clock.monotonic()
        slow = seconds >= self._config.slow_call
        if probe is CLOSED_PASS:
            if self._state is CircuitState.CLOSED:
                self._window.record(now, failed=failed, slow=slow, delivered=delivered)
                self._check_closed(now)
            return
        key = next((k for k, p in self._probes.items() if p is probe), None)
        if key is None or probe.generation != self._generation:
            return  # expired, or from before the last change: it decides nothing now
        del self._probes[key]
        if failed or slow:
            self._trip(now)
            return
        self._probe_successes += 1
        if self._probe_successes >= self._config.half_open_calls:
            self._enter(CircuitState.CLOSED)

    def _check_closed(self, now: float) -> None:
        # A long healthy stretch forgives earlier trips, so the next opening is short again.
        if self._trips and now - self._closed_since >= self._config.window:
            self._trips -= 1
            self._closed_since = now
        counts = self._window.counts(now)
        if counts.calls < self._config.min_calls:
            return
        if (
            counts.failure_rate >= self._config.failure_rate
            or counts.slow_rate >= self._config.slow_call_rate
        ):
            self._trip(now)

    def _trip(self, now: float) -> None:
        self._trips += 1
        base = min(self._config.open_for * 2 ** (self._trips - 1), self._config.max_open_for)
        # Jitter keeps instances and suppliers that tripped together from probing in step.
        self._opened_until = now + base * (0.9 + 0.2 * self._rng.random())
        self._enter(CircuitState.OPEN)

    def _expire_probes(self) -> None:
        now = self._clock.monotonic()
        expired = [k for k, p in self._probes.items() if now - p.started >= self._probe_expiry]
        if expired:
            # A probe that never reports counts as a failure: the supplier did not answer in time.
            self._probes.clear()
            self._trip(now)

    def _enter(self, state: CircuitState) -> None:
        if state is self._state:
            return
        self._state = state
        self._generation += 1
        self._probes.clear()
        self._probe_successes = 0
        if state is CircuitState.CLOSED:
            self._window.clear()
            self._closed_since = self._clock.monotonic()
        self._on_change(state)
