"""A supplier's gate: admission, the bookkeeping after a request, and honouring throttling."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from adapters.interface import HttpReply, SupplierReply, Verdict
from adapters.transport import MAX_RETRY_AFTER_SECONDS
from gateway.breaker import CircuitState
from gateway.clock import ManualClock
from gateway.config.loader import parse_config
from gateway.metrics import Metrics
from gateway.ratelimit import MemoryRateState
from gateway.redisrate import RedisRateState
from gateway.suppliers import THROTTLE_BACKOFF_SECONDS, Permit, Refusal, Supplier, build_suppliers
from tests.redis_servers import RedisServer

CONFIG = """
suppliers:
  s:
    protocol: fulu
    base_url: "http://127.0.0.1:1"
    credentials: {app_key: k, app_secret: s}
    max_concurrency: 2
    rate_limit: {rate: 10, per: 1s, burst: 1, max_wait: 0s}
    breaker:
      {window: 10s, min_calls: 2, failure_rate: 0.5, open_for: 5s, max_open_for: 10s, half_open_calls: 1}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def supplier(clock: ManualClock) -> Supplier:
    config = parse_config(CONFIG, {})
    return build_suppliers(
        config, Metrics(), clock=clock, rng=random.Random(1), rate_state=MemoryRateState()
    )["s"]


def reply(verdict: Verdict, retry_after: float | None = None) -> SupplierReply:
    return SupplierReply(upstream_order_id="G1", verdict=verdict, retry_after_seconds=retry_after)


async def permit(supplier: Supplier) -> Permit:
    admitted = await supplier.admit()
    assert isinstance(admitted, Permit), admitted
    return admitted


async def test_concurrency_is_counted_from_admission(supplier: Supplier, clock: ManualClock) -> None:
    first, second = await permit(supplier), await permit(supplier)
    assert supplier.inflight == 2
    clock.advance(1)
    assert await supplier.admit() is Refusal.SATURATED
    await supplier.finish(first, reply(Verdict.PROCESSING), sent=True, seconds=0.1)
    supplier.cancel(second)
    assert supplier.inflight == 0


async def test_the_rate_limit_refuses_and_an_abandoned_slot_comes_back(supplier: Supplier) -> None:
    await supplier.finish(await permit(supplier), reply(Verdict.PROCESSING), sent=True, seconds=0.1)
    second = await permit(supplier)  # rate 10/s with burst 1: two at once, then a pause
    assert await supplier.admit() is Refusal.RATE_LIMITED
    assert supplier.inflight == 1
    await supplier.abandon(second)
    assert isinstance(await supplier.admit(), Permit)


async def test_failures_open_the_breaker_but_refusals_do_not(supplier: Supplier, clock: ManualClock) -> None:
    for _ in range(2):
        clock.advance(1)
        await supplier.finish(await permit(supplier), reply(Verdict.NOT_EXECUTED), sent=True, seconds=0.1)
        clock.advance(1)
        await supplier.finish(await permit(supplier), reply(Verdict.ACCOUNT_INVALID), sent=True, seconds=0.1)
    assert supplier.circuit is CircuitState.CLOSED  # refusals are answers, not failures
    clock.advance(11)  # a fresh window
    await supplier.finish(await permit(supplier), reply(Verdict.UNKNOWN), sent=True, seconds=0.1)
    clock.advance(1)
    await supplier.finish(await permit(supplier), reply(Verdict.NOT_EXECUTED), sent=False, seconds=0.1)
    assert supplier.circuit is CircuitState.OPEN
    assert await supplier.admit() is Refusal.CIRCUIT_OPEN
    assert not supplier.routable


async def test_a_cancelled_probe_does_not_close_the_breaker(supplier: Supplier, clock: ManualClock) -> None:
    for _ in range(2):
        clock.advance(1)
        await supplier.finish(await permit(supplier), reply(Verdict.UNKNOWN), sent=True, seconds=0.1)
    clock.advance(supplier.breaker.open_remaining() + 0.01)
    probe = await permit(supplier)
    supplier.cancel(probe)
    assert supplier.circuit is CircuitState.HALF_OPEN
    assert supplier.inflight == 0


async def test_throttling_pauses_for_retry_after_or_a_growing_backoff(
    supplier: Supplier, clock: ManualClock
) -> None:
    await supplier.finish(await permit(supplier), reply(Verdict.THROTTLED, 7.0), sent=True, seconds=0.1)
    assert await supplier.limiter.ready_in() == pytest.approx(7.0, abs=0.2)
    clock.advance(8)
    await supplier.finish(await permit(supplier), reply(Verdict.THROTTLED), sent=True, seconds=0.1)
    first_backoff = await supplier.limiter.ready_in()
    clock.advance(first_backoff + 1)
    await supplier.finish(await permit(supplier), reply(Verdict.THROTTLED), sent=True, seconds=0.1)
    assert await supplier.limiter.ready_in() > first_backoff


async def test_disabled_suppliers_refuse_orders_but_not_queries(supplier: Supplier) -> None:
    supplier.set_disabled(True)
    assert await supplier.admit() is Refusal.DISABLED
    assert isinstance(await supplier.admit(for_query=True), Permit)


@pytest.mark.parametrize("retry_after", ["31536000", "1e300", "9" * 400])
async def test_a_supplier_answering_429_is_paused_at_most_the_clamp(
    supplier: Supplier, clock: ManualClock, retry_after: str
) -> None:
    answer = HttpReply(status=429, headers={"Retry-After": retry_after}, body=b"")
    throttled = supplier.adapter.parse_submit("G1", answer)
    assert throttled.verdict is Verdict.THROTTLED
    await supplier.finish(await permit(supplier), throttled, sent=True, seconds=0.1)
    paused = await supplier.limiter.ready_in()
    assert 0 < paused <= MAX_RETRY_AFTER_SECONDS
    clock.advance(MAX_RETRY_AFTER_SECONDS + 1)
    assert await supplier.limiter.ready_in() == 0
    assert isinstance(await supplier.admit(for_query=True), Permit)  # reconciliation goes on


@pytest.mark.parametrize(
    ("asked", "at_most"),
    [
        (1e300, MAX_RETRY_AFTER_SECONDS),
        (float("inf"), MAX_RETRY_AFTER_SECONDS),
        (31_536_000.0, MAX_RETRY_AFTER_SECONDS),
        (float("nan"), THROTTLE_BACKOFF_SECONDS[0]),
        (-5.0, THROTTLE_BACKOFF_SECONDS[0]),
        (-float("inf"), THROTTLE_BACKOFF_SECONDS[0]),
    ],
)
async def test_finish_survives_any_float_as_the_wait(
    supplier: Supplier, clock: ManualClock, asked: float, at_most: float
) -> None:
    await supplier.finish(await permit(supplier), reply(Verdict.THROTTLED, asked), sent=True, seconds=0.1)
    paused = await supplier.limiter.ready_in()
    assert 0 < paused <= at_most + 0.2  # the pause ends with the steady pace, no burst


async def test_an_unreachable_shared_limit_admits_nothing_and_keeps_no_slot(
    clock: ManualClock, redis_server: RedisServer
) -> None:
    """Redis down: whether a request fits the supplier's limit is unknown, so none goes; nothing leaks."""
    client = Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    try:
        state = RedisRateState(client)
        await state.load()
        supplier = build_suppliers(
            parse_config(CONFIG, {}), Metrics(), clock=clock, rng=random.Random(1), rate_state=state
        )["s"]
        admitted = await permit(supplier)
        await supplier.abandon(admitted)
        redis_server.stop()
        for _ in range(3):
            assert await supplier.admit() is Refusal.LIMIT_UNKNOWN
        assert supplier.inflight == 0
        redis_server.start()
        await supplier.abandon(await permit(supplier))  # back by itself once Redis is
    finally:
        await client.aclose()


async def test_a_query_waits_in_line_where_a_submit_is_refused(
    supplier: Supplier, clock: ManualClock
) -> None:
    """Submits refused after max_wait (0 s here) must not starve queries: a query takes the next slot."""
    admitted = [await permit(supplier), await permit(supplier)]  # rate 10/s with a burst of 1
    for done in admitted:
        await supplier.finish(done, reply(Verdict.PROCESSING), sent=True, seconds=0.01)
    assert await supplier.admit() is Refusal.RATE_LIMITED  # the next slot is 0.1 s away
    query = await supplier.admit(for_query=True)  # waits for it
    assert isinstance(query, Permit)
    await supplier.finish(query, reply(Verdict.PROCESSING), sent=True, seconds=0.01)
    clock.advance(0.1)
    # That slot was the query's: a submit now would have had it, and must wait for the next.
    assert await supplier.admit() is Refusal.RATE_LIMITED
