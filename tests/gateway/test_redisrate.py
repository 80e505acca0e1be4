"""The rate limit on Redis: instances sharing it stay within `rate + burst` per `per` on Redis's clock.

Redis's clock cannot be moved, so every test here holds for any clock: it measures by the times
Redis reports, or uses a pace slow enough that the test's own run time cannot matter.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from gateway.clock import ManualClock
from gateway.config.model import RateLimitConfig
from gateway.ratelimit import MemoryRateState, RateLimiter, Schedule
from gateway.redisrate import GCRA_SCRIPT, RedisRateState, Slot, micro_schedule, to_us
from gateway.store.interface import StoreError
from tests.gateway.redis_clients import KINDS, Kind, open_client
from tests.redis_servers import RedisCluster, RedisServer, redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]  # fixtures, found by name through `open_client`

LIMIT = RateLimitConfig(rate=20, per=1.0, burst=5, max_wait=0.25)
SCHEDULE = Schedule.of(LIMIT)
# Fifty seconds a slot: whatever time the test takes, no slot frees up while it runs.
SLOW_LIMIT = RateLimitConfig(rate=20, per=1000.0, burst=5, max_wait=0.0)
SLOW = Schedule.of(SLOW_LIMIT)
SHA = hashlib.sha1(GCRA_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


def max_in_window_us(times: list[int], window_us: int) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window_us:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture(params=KINDS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Redis | ClusterClient]:
    async with open_client(request, request.param) as redis_client:
        yield redis_client


async def test_two_instances_together_never_exceed_rate_plus_burst_in_any_window(
    request: pytest.FixtureRequest, client: Redis | ClusterClient
) -> None:
    kind: Kind = request.node.callspec.params["client"]
    async with open_client(request, kind) as other:  # a second instance's own client, same Redis
        instances = [RedisRateState(client), RedisRateState(other)]
        await instances[0].load()
        # 200 callers at once, each willing to wait 2 s: every slot is placed by Redis's clock.
        calls = [instances[n % 2].reserve_slot("s", SCHEDULE, 2.0) for n in range(200)]
        slots = [slot for slot in await asyncio.gather(*calls) if slot is not None]
    assert max_in_window_us([slot.at_us for slot in slots], to_us(LIMIT.per)) <= LIMIT.rate + LIMIT.burst
    assert all(0 <= slot.wait_us <= 2_000_000 for slot in slots)
    # Not needlessly strict: burst + 1 at once, then one per 50 ms for the 2 s a caller may wait.
    assert len(slots) >= 6 + 40


async def test_a_burst_from_two_limiters_admits_burst_plus_one(
    request: pytest.FixtureRequest, client: Redis | ClusterClient
) -> None:
    kind: Kind = request.node.callspec.params["client"]
    async with open_client(request, kind) as other:
        limiters = [
            RateLimiter("s", SLOW_LIMIT, RedisRateState(redis_client), ManualClock())
            for redis_client in (client, other)
        ]
        waits = await asyncio.gather(*(limiters[n % 2].acquire() for n in range(100)))
    assert waits.count(0.0) == SLOW_LIMIT.burst + 1
    assert waits.count(None) == 100 - (SLOW_LIMIT.burst + 1)


async def test_a_pause_on_one_instance_stops_every_instance(
    request: pytest.FixtureRequest, client: Redis | ClusterClient
) -> None:
    kind: Kind = request.node.callspec.params["client"]
    async with open_client(request, kind) as other:
        first = RateLimiter("s", LIMIT, RedisRateState(client), ManualClock())
        second = RateLimiter("s", LIMIT, RedisRateState(other), ManualClock(mono=50_000.0))
        await first.pause(30.0)  # the supplier answered 429 / Retry-After: 30 to the first instance
        assert await second.acquire() is None
        assert await second.ready_in() == pytest.approx(30.0, abs=1.0)
        assert await RateLimiter("other", LIMIT, RedisRateState(other), ManualClock()).acquire() == 0.0


async def test_the_callers_clock_is_not_used(client: Redis | ClusterClient) -> None:
    clock = ManualClock()
    limiter = RateLimiter("s", SLOW_LIMIT, RedisRateState(client), clock)
    for _ in range(6):
        assert await limiter.acquire() == 0.0
    clock.advance(3600.0)  # an instance whose clock runs ahead frees nothing
    assert await limiter.acquire() is None
    assert await limiter.ready_in() == pytest.approx(50.0, abs=1.0)


async def test_one_hash_tagged_key_per_supplier_expiring_when_idle(client: Redis | ClusterClient) -> None:
    state = RedisRateState(client, prefix="t:")
    key = state.key("s")
    assert key == "{t:rl:s}"  # one slot per supplier on a Cluster, whatever follows the tag
    await state.reserve("s", 0.0, SLOW, 0.0)
    stored = await client.get(key)
    assert isinstance(stored, bytes)
    assert re.fullmatch(rb"\d{16}", stored)  # integer microseconds, never a rounded float
    assert 49_000 < await client.pttl(key) <= 50_001  # until its arrival time, no longer
    await state.release("s", SLOW)
    assert await client.exists(key) == 0  # nothing reserved: nothing left behind
    await state.pause("s", 0.0, 2.0, SLOW)
    assert 251_000 < await client.pttl(key) <= 252_001  # the pause, then the tolerance


async def test_the_script_is_loaded_once_and_again_when_redis_forgot_it(
    request: pytest.FixtureRequest, client: Redis | ClusterClient
) -> None:
    state = RedisRateState(client)
    await state.load()
    nodes: list[RedisServer]
    if request.node.callspec.params["client"] == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        nodes = cluster.nodes
    else:
        nodes = [request.getfixturevalue("redis_server")]
    assert all(node.cli("script", "exists", SHA) == "1" for node in nodes)  # every primary has it
    for node in nodes:
        node.cli("script", "flush")
    assert await state.reserve("s", 0.0, SLOW, 0.0) == 0.0  # NOSCRIPT: loaded again, then run
    assert await state.reserve("s", 0.0, SLOW, 0.0) == 0.0


async def test_one_round_trip_per_acquire(redis_server: RedisServer) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        state = RedisRateState(client)
        await state.load()
        limiter = RateLimiter("s", RateLimitConfig(rate=1e6, per=1.0, burst=1000), state, ManualClock())
        before = await client.info("commandstats")
        for _ in range(50):
            assert await limiter.acquire() == 0.0
        after = await client.info("commandstats")
    finally:
        await client.aclose()
    calls = {name: after[name]["calls"] - before.get(name, {"calls": 0})["calls"] for name in after}
    assert calls["cmdstat_evalsha"] == 50
    # Everything else counted ran inside the script (or is the INFO itself): no SCRIPT LOAD, no retry.
    others = {name for name, count in calls.items() if count} - {"cmdstat_evalsha", "cmdstat_info"}
    assert others <= {"cmdstat_time", "cmdstat_get", "cmdstat_set", "cmdstat_del"}


async def test_an_unreachable_redis_refuses_and_a_restarted_one_serves_again(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        state = RedisRateState(client)
        await state.load()
        limiter = RateLimiter("s", SLOW_LIMIT, state, ManualClock())
        assert await limiter.acquire() == 0.0
        redis_server.stop()
        with pytest.raises(StoreError) as refused:
            await limiter.acquire()  # not admitted: never a count of our own
        assert refused.value.__cause__ is not None
        for call in (limiter.ready_in(), limiter.release(), limiter.pause(1.0), state.load()):
            with pytest.raises(StoreError):
                await call
        redis_server.start()  # an empty Redis: no schedule, and the script is gone
        assert await limiter.acquire() == 0.0
    finally:
        await client.aclose()


# The arithmetic: microseconds never loosen the schedule, and the Lua script is the memory state's GCRA.


@given(
    rate=st.floats(0.001, 1e6, allow_nan=False),
    per=st.floats(0.001, 86_400.0, allow_nan=False),
    burst=st.integers(0, 10_000),
)
def test_microseconds_keep_the_promise(rate: float, per: float, burst: int) -> None:
    schedule = Schedule.of(RateLimitConfig(rate=rate, per=per, burst=burst))
    interval_us, tolerance_us = micro_schedule(schedule)
    # Never looser than the nanosecond schedule: slots no closer, and a burst no larger.
    assert schedule.interval <= interval_us * 1000 < schedule.interval + 1000
    assert schedule.tolerance - 1000 < tolerance_us * 1000 <= schedule.tolerance
    assert tolerance_us <= burst * interval_us


OPERATIONS = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 10**8)),  # the longest wait accepted, µs
    st.tuples(st.just("pause"), st.integers(0, 10**8)),  # the pause, µs
    st.tuples(st.just("release"), st.just(0)),
    st.tuples(st.just("ready"), st.just(0)),
)


@pytest.fixture
async def server_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis_client = Redis.from_url(redis_server.url)
    try:
        yield redis_client
    finally:
        await redis_client.aclose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    interval_us=st.one_of(st.integers(1, 500), st.integers(1, 10**7)),
    burst=st.integers(0, 20),
    operations=st.lists(OPERATIONS, min_size=1, max_size=30),
)
async def test_the_lua_script_is_the_memory_states_arithmetic_step_by_step(
    server_client: Redis, interval_us: int, burst: int, operations: list[tuple[str, int]]
) -> None:
    """Each step runs on Redis at the time Redis reports, then on the memory state at that same time.

    Tiny intervals let real time overtake the schedule between steps (stale and expired keys), long
    ones keep it ahead (waits, refusals, pauses); both states must agree to the microsecond.
    """
    script = server_client.register_script(GCRA_SCRIPT)
    key = f"{{p:rl:{uuid.uuid4().hex}}}"
    tolerance_us = burst * interval_us
    memory, schedule = MemoryRateState(), Schedule(interval=interval_us * 1000, tolerance=tolerance_us * 1000)
    start_us: int | None = None
    for op, argument_us in operations:
        value, now_us = await script(keys=[key], args=[op, interval_us, tolerance_us, argument_us])
        start_us = now_us if start_us is None else start_us
        now = (now_us - start_us) / 1e6  # the memory state's float seconds, exact to the µs here
        match op:
            case "reserve":
                wait = await memory.reserve(key, now, schedule, argument_us / 1e6)
                assert value == (-1 if wait is None else to_us(wait))
            case "ready":
                assert value == to_us(await memory.ready_in(key, now, schedule))
            case "release":
                await memory.release(key, schedule)
            case "pause":
                await memory.pause(key, now, argument_us / 1e6, schedule)
        stored, ttl_ms = await server_client.get(key), await server_client.pttl(key)
        if stored is not None:
            assert isinstance(stored, bytes)
            assert re.fullmatch(rb"\d+", stored)
            # Expires after its arrival time (never before: that would free a slot early), and soon after.
            later_s, later_us = await server_client.time()
            assert ttl_ms * 1000 >= int(stored) - (later_s * 1_000_000 + later_us) - 1000
            assert ttl_ms * 1000 <= int(stored) - now_us + 3000  # whole ms at both ends


def test_a_slot_is_when_asked_plus_the_wait() -> None:
    assert Slot(asked_us=1_000, wait_us=250).at_us == 1_250
