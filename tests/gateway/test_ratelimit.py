"""GCRA rate limiting: the window promise, waiting, refusal, release and pause, on every state.

The algorithm tests run on the memory state and on Redis (a single server and a Cluster). Redis
reads its own clock, which a test cannot move, so they use a pace of one request per 50 seconds
and hold for whatever time the test itself takes. Tests that move time use the memory state.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from gateway.clock import ManualClock
from gateway.config.model import RateLimitConfig
from gateway.ratelimit import MemoryRateState, RateLimiter, RateState, Schedule
from gateway.redisrate import RedisRateState
from tests.gateway.redis_clients import KINDS, open_client
from tests.redis_servers import redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]  # fixtures, found by name through `open_client`

LIMIT = RateLimitConfig(rate=20, per=1.0, burst=5, max_wait=0.25)
SCHEDULE = Schedule.of(LIMIT)
# The same shape, a thousand times slower: a test's own run time is nothing against its 50 s interval.
SLOW = Schedule.of(RateLimitConfig(rate=20, per=1000.0, burst=5, max_wait=250.0))
INTERVAL = 50.0
# Redis's clock moves while the test runs; a second is far more than a test takes, far less than a slot.
SLACK = 1.0


@pytest.fixture(params=["memory", *KINDS])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[RateState]:
    if request.param == "memory":
        yield MemoryRateState()
        return
    async with open_client(request, request.param) as client:
        redis_state = RedisRateState(client)
        await redis_state.load()
        yield redis_state


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# The algorithm, on every state; `now` is the same throughout, which a Redis state ignores anyway.


async def test_a_burst_then_the_steady_rate(state: RateState) -> None:
    waits = [await state.reserve("s", 100.0, SLOW, 0.0) for _ in range(8)]
    assert waits[:6] == [0.0] * 6  # burst + 1 at once
    assert waits[6:] == [None, None]  # the rest would have to wait, and may not


async def test_waiting_is_bounded_and_refusal_reserves_nothing(state: RateState) -> None:
    for _ in range(6):
        await state.reserve("s", 0.0, SLOW, 0.0)
    assert await state.reserve("s", 0.0, SLOW, 5 * INTERVAL) == pytest.approx(INTERVAL, abs=SLACK)
    ready = await state.ready_in("s", 0.0, SLOW)
    assert ready == pytest.approx(2 * INTERVAL, abs=SLACK)
    assert await state.reserve("s", 0.0, SLOW, 1.5 * INTERVAL) is None
    assert await state.ready_in("s", 0.0, SLOW) == pytest.approx(ready, abs=SLACK)  # nothing was taken


async def test_a_released_slot_goes_to_the_next_caller(state: RateState) -> None:
    for _ in range(6):
        await state.reserve("s", 0.0, SLOW, 0.0)
    assert await state.reserve("s", 0.0, SLOW, 0.0) is None
    await state.release("s", SLOW)
    assert await state.reserve("s", 0.0, SLOW, 0.0) == 0.0
    assert await state.reserve("s", 0.0, SLOW, 0.0) is None


async def test_pause_holds_every_slot_then_resumes_at_the_pace_without_a_burst(state: RateState) -> None:
    await state.pause("s", 0.0, 100.0, SLOW)
    assert await state.reserve("s", 0.0, SLOW, 99.0) is None
    assert await state.ready_in("s", 0.0, SLOW) == pytest.approx(100.0, abs=SLACK)
    assert await state.reserve("s", 0.0, SLOW, 101.0) == pytest.approx(100.0, abs=SLACK)
    # A supplier that throttled us gets no burst: the next slot is one interval after the pause.
    assert await state.reserve("s", 0.0, SLOW, 101.0) is None
    assert await state.reserve("s", 0.0, SLOW, 200.0) == pytest.approx(100.0 + INTERVAL, abs=SLACK)


async def test_a_shorter_pause_does_not_shorten_a_longer_one(state: RateState) -> None:
    await state.pause("s", 0.0, 300.0, SLOW)
    await state.pause("s", 0.0, 10.0, SLOW)
    assert await state.ready_in("s", 0.0, SLOW) == pytest.approx(300.0, abs=SLACK)


async def test_keys_are_independent(state: RateState) -> None:
    for _ in range(6):
        await state.reserve("a", 0.0, SLOW, 0.0)
    assert await state.reserve("a", 0.0, SLOW, 0.0) is None
    assert await state.reserve("b", 0.0, SLOW, 0.0) == 0.0
    assert await state.ready_in("b", 0.0, SLOW) == 0.0


async def test_the_limiter_takes_its_max_wait_from_the_config(state: RateState) -> None:
    limit = RateLimitConfig(rate=20, per=1000.0, burst=0, max_wait=0.0)
    limiter = RateLimiter("s", limit, state, ManualClock())
    assert await limiter.acquire() == 0.0
    assert await limiter.acquire() is None
    assert await limiter.ready_in() == pytest.approx(INTERVAL, abs=SLACK)
    await limiter.release()
    assert await limiter.acquire() == 0.0


# Moving time: the memory state, on an explicit clock.


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


async def test_pause_ends_on_time_then_the_pace_resumes() -> None:
    state = MemoryRateState()
    await state.pause("s", 0.0, 10.0, SCHEDULE)
    assert await state.reserve("s", 9.0, SCHEDULE, 0.5) is None
    assert await state.ready_in("s", 9.0, SCHEDULE) == pytest.approx(1.0)
    assert await state.reserve("s", 10.0, SCHEDULE, 0.0) == 0.0
    assert await state.reserve("s", 10.0, SCHEDULE, 0.0) is None  # a supplier that throttled us gets no burst
    assert await state.reserve("s", 10.05, SCHEDULE, 0.0) == 0.0


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
