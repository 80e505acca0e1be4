"""The circuit breaker on a manual clock: tripping, growing open times, half-open probes, recovery."""

from __future__ import annotations

import random

import pytest

from gateway.breaker import CLOSED_PASS, CircuitBreaker, CircuitState
from gateway.clock import ManualClock
from gateway.config.model import BreakerConfig

CONFIG = BreakerConfig(
    window=10.0,
    min_calls=5,
    failure_rate=0.5,
    slow_call=1.0,
    slow_call_rate=0.5,
    open_for=5.0,
    max_open_for=40.0,
    half_open_calls=2,
)


def make(clock: ManualClock, changes: list[CircuitState] | None = None) -> CircuitBreaker:
    log = changes if changes is not None else []
    return CircuitBreaker(CONFIG, clock, random.Random(1), probe_expiry_seconds=3.0, on_change=log.append)


def calls(breaker: CircuitBreaker, n: int, *, failed: bool = False, seconds: float = 0.1) -> None:
    for _ in range(n):
        probe = breaker.allow()
        assert probe is CLOSED_PASS
        breaker.record(probe, failed=failed, seconds=seconds)


def trip(breaker: CircuitBreaker) -> None:
    calls(breaker, 5, failed=True)
    assert breaker.state is CircuitState.OPEN


def test_it_needs_min_calls_before_judging() -> None:
    breaker = make(ManualClock())
    calls(breaker, 4, failed=True)
    assert breaker.state is CircuitState.CLOSED
    calls(breaker, 1, failed=True)
    assert breaker.state is CircuitState.OPEN
    assert breaker.allow() is None
    assert not breaker.available()


def test_failure_rate_below_the_threshold_stays_closed() -> None:
    breaker = make(ManualClock())
    calls(breaker, 6)
    calls(breaker, 5, failed=True)
    assert breaker.state is CircuitState.CLOSED


def test_slow_calls_trip_it_too() -> None:
    breaker = make(ManualClock())
    calls(breaker, 5, seconds=3.0)
    assert breaker.state is CircuitState.OPEN


def test_old_calls_leave_the_window() -> None:
    clock = ManualClock()
    breaker = make(clock)
    calls(breaker, 4, failed=True)
    clock.advance(11)
    calls(breaker, 4)
    calls(breaker, 1, failed=True)
    assert breaker.state is CircuitState.CLOSED


def test_open_then_half_open_then_closed_after_good_probes() -> None:
    clock = ManualClock()
    changes: list[CircuitState] = []
    breaker = make(clock, changes)
    trip(breaker)
    assert 4.5 <= breaker.open_remaining() <= 5.5  # open_for with jitter
    clock.advance(5.6)
    assert breaker.state is CircuitState.HALF_OPEN
    first, second = breaker.allow(), breaker.allow()
    assert first is not None
    assert second is not None
    assert breaker.allow() is None  # only half_open_calls probes at once
    breaker.record(first, failed=False, seconds=0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.record(second, failed=False, seconds=0.1)
    assert breaker.state is CircuitState.CLOSED
    assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_a_failed_probe_reopens_for_longer_up_to_the_cap() -> None:
    clock = ManualClock()
    breaker = make(clock)
    trip(breaker)
    opened = []
    for _ in range(6):
        opened.append(breaker.open_remaining())
        clock.advance(breaker.open_remaining() + 0.01)
        probe = breaker.allow()
        assert probe is not None
        breaker.record(probe, failed=True, seconds=0.1)
        assert breaker.state is CircuitState.OPEN
    assert opened[1] == pytest.approx(2 * CONFIG.open_for, rel=0.15)
    assert opened[2] == pytest.approx(4 * CONFIG.open_for, rel=0.15)
    assert max(opened) <= CONFIG.max_open_for * 1.1


def test_a_slow_probe_counts_as_a_failure() -> None:
    clock = ManualClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(6)
    probe = breaker.allow()
    assert probe is not None
    breaker.record(probe, failed=False, seconds=2.0)
    assert breaker.state is CircuitState.OPEN


def test_a_probe_that_never_reports_cannot_leave_it_stuck() -> None:
    clock = ManualClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(6)
    assert breaker.allow() is not None
    assert breaker.allow() is not None
    assert breaker.allow() is None
    clock.advance(3.1)  # past the probe expiry: the silent probes count as failures
    assert breaker.allow() is None
    assert breaker.state is CircuitState.OPEN
    clock.advance(breaker.open_remaining() + 0.01)
    assert breaker.allow() is not None


def test_late_reports_from_before_a_change_decide_nothing() -> None:
    clock = ManualClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(6)
    stale = breaker.allow()
    assert stale is not None
    clock.advance(3.1)
    breaker.allow()  # expires the probe and reopens
    clock.advance(breaker.open_remaining() + 0.01)
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.record(stale, failed=True, seconds=0.1)
    assert breaker.state is CircuitState.HALF_OPEN


def test_a_healthy_period_shortens_the_next_opening() -> None:
    clock = ManualClock()
    breaker = make(clock)
    trip(breaker)
    for _ in range(2):  # two failed probes: the next opening would be 4x
        clock.advance(breaker.open_remaining() + 0.01)
        probe = breaker.allow()
        assert probe is not None
        breaker.record(probe, failed=True, seconds=0.1)
    clock.advance(breaker.open_remaining() + 0.01)
    for probe in (breaker.allow(), breaker.allow()):
        assert probe is not None
        breaker.record(probe, failed=False, seconds=0.1)
    assert breaker.state is CircuitState.CLOSED
    for _ in range(4):  # healthy windows, each forgiving one trip
        clock.advance(CONFIG.window + 0.1)
        calls(breaker, 1)
    clock.advance(CONFIG.window + 0.1)
    trip(breaker)
    assert breaker.open_remaining() <= CONFIG.open_for * 1.1


def test_a_released_probe_frees_its_place_but_proves_nothing() -> None:
    clock = ManualClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(6)
    first, second = breaker.allow(), breaker.allow()
    assert first is not None
    assert second is not None
    assert breaker.allow() is None
    breaker.release(first)
    breaker.release(second)
    assert breaker.state is CircuitState.HALF_OPEN  # two given-back probes did not close it
    third = breaker.allow()
    assert third is not None
    breaker.record(third, failed=False, seconds=0.1)
    assert breaker.state is CircuitState.HALF_OPEN  # one real success of the two needed


def test_a_released_closed_pass_leaves_the_window_alone() -> None:
    breaker = make(ManualClock())
    calls(breaker, 4, failed=True)
    breaker.release(CLOSED_PASS)
    calls(breaker, 1, failed=True)
    assert breaker.state is CircuitState.OPEN
