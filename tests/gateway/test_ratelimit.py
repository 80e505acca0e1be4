"""GCRA rate limiting with explicit time: the window promise, waiting, refusal, release and pause."""

from __future__ import annotations

import random

import pytest

from gateway.clock import ManualClock
from gateway.config.model import RateLimitConfig
from gateway.ratelimit import MemoryRateState, RateLimiter, Schedule

LIMIT = RateLimitConfig(rate=20, per=1.0, burst=5, max_wait=0.25)
SCHEDULE = Schedule.of(LIMIT)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_a_burst_then_the_steady_rate() -> None:
    state = MemoryRateState()
    waits = [await state.reserve("s", 100.0, SCHEDULE, 0.0) for _ in range(8)]
    assert waits[:6] == [0.0] * 6  # burst + 1 at once
    assert waits[6:] == [None, None]  # the rest would have to wait, and may not


@pytest.mark.parametrize("seed", range(5))
async def test_no_window_ever_sees_more_than_rate_plus_burst(seed: int) -> None:
    rng = random.Random(seed)
    state = MemoryRateState()
    now, sent = 1000.0, []
    for _ in range(2000):
        now += rng.expovariate(60)  # three times the allowed rate
        wait = await state.reserve("s", now, SCHEDULE, LIMIT.max_wait)
        if wait is not None:
            assert 0 <= wait <= LIMIT.max_wait
            sent.append(round(now + wait, 6))  # microseconds: the float sum must not blur the edges
    assert max_in_window(sent, LIMIT.per) <= LIMIT.rate + LIMIT.burst
    assert len(sent) > 0.8 * LIMIT.rate * (now - 1000.0)  # and it is not needlessly strict


async def test_waiting_is_bounded_and_refusal_reserves_nothing() -> None:
    state = MemoryRateState()
    for _ in range(6):
        await state.reserve("s", 0.0, SCHEDULE, 0.0)
    assert await state.reserve("s", 0.0, SCHEDULE, 0.25) == pytest.approx(0.05)
    ready = await state.ready_in("s", 0.0, SCHEDULE)
    assert await state.reserve("s", 0.0, SCHEDULE, 0.0) is None
    assert await state.ready_in("s", 0.0, SCHEDULE) == ready


async def test_a_released_slot_goes_to_the_next_caller() -> None:
    state = MemoryRateState()
    for _ in range(6):
        await state.reserve("s", 0.0, SCHEDULE, 0.0)
    assert await state.reserve("s", 0.0, SCHEDULE, 0.0) is None
    await state.release("s", SCHEDULE)
    assert await state.reserve("s", 0.0, SCHEDULE, 0.0) == 0.0


async def test_pause_holds_every_slot_until_it_ends_then_resumes_without_a_burst() -> None:
    state = MemoryRateState()
    await state.pause("s", 10.0, SCHEDULE)
    assert await state.reserve("s", 9.0, SCHEDULE, 0.5) is None
    assert await state.ready_in("s", 9.0, SCHEDULE) == pytest.approx(1.0)
    assert await state.reserve("s", 10.0, SCHEDULE, 0.0) == 0.0
    assert await state.reserve("s", 10.0, SCHEDULE, 0.0) is None  # a supplier that throttled us gets no burst
    assert await state.reserve("s", 10.05, SCHEDULE, 0.0) == 0.0


async def test_keys_are_independent() -> None:
    state = MemoryRateState()
    for _ in range(6):
        await state.reserve("a", 0.0, SCHEDULE, 0.0)
    assert await state.reserve("a", 0.0, SCHEDULE, 0.0) is None
    assert await state.reserve("b", 0.0, SCHEDULE, 0.0) == 0.0


async def test_limiter_uses_the_clock_and_its_max_wait() -> None:
    clock = ManualClock()
    limiter = RateLimiter("s", LIMIT, MemoryRateState(), clock)
    for _ in range(6):
        assert await limiter.acquire(max_wait=0.0) == 0.0
    assert await limiter.acquire(max_wait=0.0) is None
    clock.advance(1.0)
    assert await limiter.acquire(max_wait=0.0) == 0.0
    await limiter.pause(30)
    assert await limiter.acquire() is None
    assert await limiter.ready_in() == pytest.approx(30.0)
