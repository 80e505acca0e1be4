"""Each configured supplier at run time: adapter, timeouts, metric children, and its gate.

The gate admits a request only when the supplier is enabled, its balance (as far as known) covers
the submit's cost above `balance.reserve`, its breaker lets it through, it has room under
`max_concurrency` and a rate-limit slot comes within `max_wait`. After the request, `finish` feeds
the breaker and health record, honours throttling and settles the submit's hold on the balance.
Built once from the configuration; per-order code only calls `admit` and `finish`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from aiohttp import ClientTimeout

from adapters.interface import AdapterSettings, Outcome, SupplierAdapter, SupplierReply
from adapters.registry import adapter_factory
from adapters.transport import MAX_RETRY_AFTER_SECONDS
from gateway.balance import SupplierBalance
from gateway.breaker import CircuitBreaker, CircuitState, Probe
from gateway.clock import Clock
from gateway.config.model import GatewayConfig, SupplierConfig
from gateway.health import CallWindow, LatencySample
from gateway.logs import get_logger
from gateway.metrics import Metrics, SupplierMetrics
from gateway.ratelimit import RateLimiter, RateState
from gateway.store import StoreError

log = get_logger(__name__)
HEALTH_WINDOW_SECONDS: Final = 60.0
QUERY_EXTRA_WAIT_SECONDS: Final = 1.0
THROTTLE_BACKOFF_SECONDS: Final = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
ANSWERED: Final = frozenset({Outcome.PROCESSING, Outcome.SUCCEEDED, Outcome.PARTIAL})
UNCHARGED: Final = frozenset({Outcome.NOT_EXECUTED, Outcome.FAILED})
"""Submit outcomes after which the supplier holds none of the money: the balance hold goes back."""
DELIVERED_OUTCOMES: Final = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL})


class Refusal(StrEnum):
    """Why the gateway itself did not send a request to a supplier."""

    DISABLED = "disabled"
    CIRCUIT_OPEN = "circuit_open"
    SATURATED = "saturated"
    RATE_LIMITED = "rate_limited"
    # The shared rate-limit state (Redis) cannot be reached: nobody can tell whether a request
    # would stay within the supplier's limit, so none goes.
    LIMIT_UNKNOWN = "limit_unknown"
    # What the supplier's balance is known to hold, less open submits, cannot pay for this one.
    BALANCE_LOW = "balance_low"


@dataclass(frozen=True, slots=True)
class Permit:
    """One admitted request: report it with `Supplier.finish`, or give it back with `abandon`."""

    probe: Probe
    counts_for_breaker: bool
    balance_hold: int | None = None  # the token of the submit's cost held on the balance


class Supplier:
    def __init__(
        self,
        *,
        name: str,
        config: SupplierConfig,
        adapter: SupplierAdapter,
        metrics: SupplierMetrics,
        callback_url: str,
        limiter: RateLimiter,
        breaker: CircuitBreaker,
        clock: Clock,
    ) -> None:
        self.name = name
        self.config = config
        self.adapter = adapter
        self.metrics = metrics
        self.callback_url = callback_url
        self.limiter = limiter
        self.breaker = breaker
        # Connect is bounded on its own so that "never reached it" stays distinguishable from
        # "sent, then no answer" (see upstream.py).
        self.timeout = ClientTimeout(
            total=None, connect=config.connect_timeout, sock_connect=config.connect_timeout
        )
        self.disabled = config.disabled
        # Removed from the file by a reload: never routed to, still there for callbacks and queries.
        self.retired = False
        self.inflight = 0
        # Every admission ever, so a reload can tell that requests came and went while it looked away.
        self.admissions = 0
        self.balance = SupplierBalance()
        self.health = CallWindow(HEALTH_WINDOW_SECONDS)
        self.latency = LatencySample()
        self._clock = clock
        self._throttle_streak = 0
        # Read at scrape time: per-request code only changes plain attributes.
        metrics.inflight.set_function(lambda: float(self.inflight))
        metrics.up.set_function(lambda: 1.0 if self.routable else 0.0)
        metrics.circuit_state.set_function(lambda: float(self.breaker.state.value))

    @property
    def routable(self) -> bool:
        """Whether routing should consider this supplier now (the rate limit is asked at `admit`)."""
        return (
            not self.disabled
            and not self.retired
            and self.inflight < self.config.max_concurrency
            and self.breaker.available()
        )

    def reconfigure(self, config: SupplierConfig, adapter: SupplierAdapter, limiter: RateLimiter) -> None:
        """Take a reloaded configuration, keeping the breaker's state, the rate schedule and inflight.

        `disabled` follows the file only where the file changed it, so an operator's switch through
        the admin API survives reloads that do not touch it (`switches` says how that rule carries
        over to switches shared by several instances and to restarts).
        """
        if config.disabled != self.config.disabled:
            self.disabled = config.disabled
        self.config = config
        self.adapter = adapter
        self.limiter = limiter
        self.timeout = ClientTimeout(
            total=None, connect=config.connect_timeout, sock_connect=config.connect_timeout
        )
        self.breaker.reconfigure(config.breaker, probe_expiry_seconds=probe_expiry(config))
        self.retired = False

    @property
    def circuit(self) -> CircuitState:
        return self.breaker.state

    @property
    def balance_low(self) -> bool:
        """Whether the last balance read is under the configured low mark."""
        return self.balance.low(self.config.balance.low)

    def set_disabled(self, disabled: bool) -> None:
        """An operator's switch, applied here; `switches.Switchboard` keeps and shares it first."""
        self.disabled = disabled

    async def admit(
        self, *, for_query: bool = False, cost_cents: int | None = None, wait: bool = True
    ) -> Permit | Refusal:
        """Let one request through the gate, waiting at most `max_wait` for a rate-limit slot.

        `wait=False` asks whether a slot is free right now: `RATE_LIMITED` then means "not without
        waiting", which is not counted as a rejection (routing asks every offer that way first).

        A submit costing `cost_cents` is refused (`BALANCE_LOW`, like a saturated supplier) when the
        known balance less open submits cannot cover it above `balance.reserve`; once admitted its
        cost is held on the balance until `finish` or `abandon` says what became of it.

        Queries skip the breaker: following up an order matters most when the supplier is unwell.
        They also wait a little longer for their slot than submits (`max_wait` plus two intervals of
        the limit, at most `QUERY_EXTRA_WAIT_SECONDS` more): submits reserve slots at most `max_wait`
        ahead, so in a rush they would take every slot and starve the queries that settle unknown
        outcomes and confirm callbacks; a query reaching just past them always finds one. It never
        waits out a supplier's own pause (that is longer): the next sweep asks again.
        """
        if self.disabled and not for_query:
            return Refusal.DISABLED
        if cost_cents is not None and not self.balance.covers(self.config.balance.reserve + cost_cents):
            return Refusal.BALANCE_LOW
        probe = None
        if not for_query:
            probe = self.breaker.allow()
            if probe is None:
                return Refusal.CIRCUIT_OPEN
        if self.inflight >= self.config.max_concurrency:
            self._give_back(probe)
            return Refusal.SATURATED
        # Counted from admission, not from sending, so that concurrent admissions see each other.
        self.inflight += 1
        self.admissions += 1
        try:
            waited = await self.limiter.acquire(
                max_wait=0.0 if not wait else self._query_wait if for_query else None
            )
        except StoreError:
            self.inflight -= 1
            self._give_back(probe)
            log.warning("supplier_limit_unreachable", supplier=self.name)
            return Refusal.LIMIT_UNKNOWN
        if waited is None:
            self.inflight -= 1
            if wait or self.config.rate_limit.max_wait <= 0:  # without max_wait, "now" was its only chance
                self.metrics.rate_limited["rejected"].inc()
            self._give_back(probe)
            return Refusal.RATE_LIMITED
        if waited:
            self.metrics.rate_limited["waited"].inc()
        # Held after the wait: an admission refused by the limit must not have moved the balance.
        hold = self.balance.hold(cost_cents) if cost_cents is not None else None
        if probe is None:
            return Permit(_NO_PROBE, counts_for_breaker=False, balance_hold=hold)
        return Permit(probe, counts_for_breaker=True, balance_hold=hold)

    @property
    def _query_wait(self) -> float:
        limit = self.config.rate_limit
        return limit.max_wait + min(2 * limit.per / limit.rate, QUERY_EXTRA_WAIT_SECONDS)

    async def abandon(self, permit: Permit) -> None:
        """The admitted request will not be sent after all: its slot and probe go back."""
        self.inflight -= 1
        if permit.balance_hold is not None:
            self.balance.release(permit.balance_hold)
        try:
            await self.limiter.release()
        except StoreError:
            # The slot stays taken until its time passes: the schedule is only tighter for it.
            log.warning("supplier_limit_unreachable", supplier=self.name)
        if permit.counts_for_breaker:
            self.breaker.release(permit.probe)

    def cancel(self, permit: Permit) -> None:
        """The admitted request was cut off with its fate unknown (cancelled): free its place only.

        Nothing is learnt about the supplier, so the breaker's probe is simply handed back; the
        submit may have been charged, so its cost stays held until a read reflects it.
        """
        self.inflight -= 1
        if permit.balance_hold is not None:
            self.balance.answered(permit.balance_hold)
        if permit.counts_for_breaker:
            self.breaker.release(permit.probe)

    def finish_plain(self, permit: Permit) -> None:
        """An admitted request about no order (a balance call) is over: free its place only."""
        self.inflight -= 1

    async def finish(self, permit: Permit, reply: SupplierReply, *, sent: bool, seconds: float) -> None:
        """Record how an admitted request went: breaker, health, and the supplier's wish to slow down."""
        self.inflight -= 1
        outcome = reply.outcome
        if permit.balance_hold is not None:
            if sent and outcome not in UNCHARGED:
                self.balance.answered(permit.balance_hold)
            else:
                self.balance.release(permit.balance_hold)
        if reply.balance_insufficient:
            # What the gateway believed the balance covers, the supplier does not: read it again now.
            self.balance.request_check()
        # Failing means unwell: never reached, or no trustworthy answer. A clear refusal is an answer.
        failed = not sent or outcome is Outcome.UNKNOWN
        delivered = outcome in ANSWERED
        if permit.counts_for_breaker:
            self.breaker.record(permit.probe, failed=failed, seconds=seconds, delivered=delivered)
            # An accepted submit has not delivered anything yet: its health counts once it settles
            # (`settled`), or a supplier that accepts everything and declines later would look perfect.
            if outcome is not Outcome.PROCESSING:
                self.health.record(
                    self._clock.monotonic(), failed=failed or not delivered, slow=False, delivered=delivered
                )
            self.latency.add(seconds)
        if reply.throttled:
            pause = throttle_pause(reply.retry_after_seconds, self._throttle_streak)
            self._throttle_streak += 1
            try:
                await self.limiter.pause(pause)
            except StoreError:
                # Other instances will be told by the supplier itself; this one holds its breaker.
                log.warning("supplier_limit_unreachable", supplier=self.name)
        elif sent:
            self._throttle_streak = 0

    def settled(self, outcome: Outcome) -> None:
        """An attempt this supplier had accepted reached its final outcome (by callback or query)."""
        delivered = outcome in DELIVERED_OUTCOMES
        self.health.record(self._clock.monotonic(), failed=not delivered, slow=False, delivered=delivered)

    def retry_after(self) -> float:
        """Seconds until this supplier might take a request again (0 if it might now)."""
        if self.disabled:
            return float("inf")
        return self.breaker.open_remaining()

    def success_rate(self) -> float | None:
        counts = self.health.counts(self._clock.monotonic())
        return counts.successes / counts.calls if counts.calls else None

    def _give_back(self, probe: Probe | None) -> None:
        if probe is not None:
            self.breaker.release(probe)


_NO_PROBE: Final = Probe(-2, 0.0)


def throttle_pause(asked_seconds: float | None, streak: int) -> float:
    """How long to pause a throttling supplier: its own wish within [0, MAX_RETRY_AFTER_SECONDS],
    or the growing backoff when it named none or named nonsense (NaN, negative).

    Any float is safe here: a pause is time in which no submit or query goes to the supplier, and
    an unbounded one (a year, inf) would leave open orders unreconciled for as long.
    """
    if asked_seconds is not None and asked_seconds >= 0:  # False for NaN too
        return min(asked_seconds, MAX_RETRY_AFTER_SECONDS)
    return THROTTLE_BACKOFF_SECONDS[min(streak, len(THROTTLE_BACKOFF_SECONDS) - 1)]


def probe_expiry(config: SupplierConfig) -> float:
    """How long a half-open probe may stay silent before it counts as failed."""
    return config.connect_timeout + config.timeout + 1.0


def callback_url(public_url: str, supplier: str) -> str:
    return f"{public_url.rstrip('/')}/callbacks/{supplier}"


def build_suppliers(
    config: GatewayConfig, metrics: Metrics, *, clock: Clock, rng: random.Random, rate_state: RateState
) -> dict[str, Supplier]:
    suppliers: dict[str, Supplier] = {}
    update_suppliers(suppliers, config, metrics, clock=clock, rng=rng, rate_state=rate_state)
    return suppliers


def update_suppliers(
    suppliers: dict[str, Supplier],
    config: GatewayConfig,
    metrics: Metrics,
    *,
    clock: Clock,
    rng: random.Random,
    rate_state: RateState,
) -> None:
    """Bring `suppliers` in line with `config` in place: new ones built, known ones reconfigured,
    removed ones retired (kept, never routed to, so late callbacks and queries still work)."""
    for name, sc in config.suppliers.items():
        adapter = adapter_factory(sc.protocol)(
            AdapterSettings(
                name=name,
                base_url=sc.base_url,
                credentials={key: secret.reveal() for key, secret in sc.credentials.items()},
                codes=sc.codes,
            )
        )
        limiter = RateLimiter(name, sc.rate_limit, rate_state, clock)
        known = suppliers.get(name)
        if known is not None:
            known.reconfigure(sc, adapter, limiter)
            continue
        suppliers[name] = Supplier(
            name=name,
            config=sc,
            adapter=adapter,
            metrics=metrics.supplier(name),
            callback_url=callback_url(config.server.public_url, name),
            limiter=limiter,
            breaker=CircuitBreaker(sc.breaker, clock, rng, probe_expiry_seconds=probe_expiry(sc)),
            clock=clock,
        )
    for name, supplier in suppliers.items():
        if name not in config.suppliers:
            supplier.retired = True
