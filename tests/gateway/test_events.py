"""The order event hub and its feeds: what counts as an event, history and its bound, resuming, resets,
fan-out; in process, and on Redis Streams shared by several hubs (as several instances) on a real Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from adapters.interface import Outcome
from gateway.clock import ManualClock
from gateway.errors import StoreUnavailable, TooManyStreams
from gateway.events import (
    EventBus,
    EventHub,
    Item,
    OrderEvent,
    Reset,
    ResetReason,
    Subscription,
    parse_event_id,
)
from gateway.order import Notification, Order, OrderStatus
from gateway.redisevents import RedisFeed
from gateway.store.redis import RedisStore
from gateway.views import public_view
from tests.redis_servers import RedisServer
from tests.store.samples import an_attempt, an_order


def bus(clock: ManualClock | None = None, **options: int) -> EventBus:
    return EventBus(clock or ManualClock(wall=1_795_000_000.0), **options)


def orders_of(items: Sequence[Item] | None) -> list[tuple[str, str]]:
    """(shop, order uid) of each event, failing on anything else."""
    assert items is not None
    assert all(isinstance(item, OrderEvent) for item in items), items
    return [(item.shop, item.order.uid) for item in items if isinstance(item, OrderEvent)]


async def drain(sub: Subscription) -> Sequence[Item] | None:
    return await sub.next(timeout_seconds=0)


def test_event_ids_are_epoch_dash_sequence() -> None:
    b = bus(ManualClock(wall=1_795_000_000.25))
    first = b.publish(an_order("A1"))
    second = b.publish(an_order("B1", shop="shop-b"))
    assert b.epoch == 1_795_000_000_250
    assert (first.id, second.id) == ("1795000000250-1", "1795000000250-2")
    assert b.position == second.id


async def test_only_changes_to_what_the_shop_sees_are_events() -> None:
    b = bus()
    sub = b.subscribe("shop-a")
    order = an_order("A1", attempts=(an_attempt("A1", 1),))
    b.order_changed(order, replace(order, version=1, notification=Notification(due_at=5.0)))
    b.order_changed(order, replace(order, updated_at=order.updated_at + 1))
    assert b.position.endswith("-0")
    b.order_changed(order, replace(order, status=OrderStatus.SUCCEEDED, reason=None))
    b.order_changed(order, replace(order, message="charged"))
    replied = replace(order.attempts[0], outcome=Outcome.PROCESSING, replied=True)
    b.order_changed(order, replace(order, attempts=(replied,)))
    assert b.position.endswith("-3")
    assert len(orders_of(await drain(sub))) == 3


async def test_json_is_the_public_view_built_once_for_every_subscriber() -> None:
    b = bus()
    first, second = b.subscribe("shop-a"), b.subscribe("shop-a")
    order = an_order("A1", attempts=(an_attempt("A1", 1),))
    event = b.publish(order)
    [a] = await drain(first) or ()
    [c] = await drain(second) or ()
    assert isinstance(a, OrderEvent)
    assert isinstance(c, OrderEvent)
    assert a is c
    assert a.data is c.data
    assert orjson.loads(event.data) == orjson.loads(orjson.dumps(public_view(order)))


async def test_a_fault_while_publishing_never_reaches_the_order_path() -> None:
    b = bus()
    # A real fault inside the real publish: a shop id that cannot key the bus's channels.
    order = replace(an_order("A1"), shop=["not", "hashable"])  # type: ignore[arg-type]
    with capture_logs() as logs:
        b.order_changed(order, replace(order, status=OrderStatus.FAILED))
    assert [entry["event"] for entry in logs] == ["order_event_failed"]
    # The bus still works for everyone else.
    sub = b.subscribe("shop-a")
    b.publish(an_order("A2"))
    assert orders_of(await drain(sub)) == [("shop-a", "A2")]


async def test_live_events_reach_a_waiting_subscriber() -> None:
    b = bus()
    sub = b.subscribe("shop-a")
    waiting = asyncio.ensure_future(sub.next(timeout_seconds=5))
    await asyncio.sleep(0)
    b.publish(an_order("A1"))
    assert orders_of(await waiting) == [("shop-a", "A1")]


async def test_nothing_pending_is_an_empty_batch_for_a_heartbeat() -> None:
    sub = bus().subscribe("shop-a")
    assert await drain(sub) == ()
    assert not sub.ended


async def test_shops_see_only_their_own_events() -> None:
    b = bus()
    a, c = b.subscribe("shop-a"), b.subscribe("shop-c")
    b.publish(an_order("A1"))
    b.publish(an_order("C1", shop="shop-c"))
    b.publish(an_order("A2"))
    assert orders_of(await drain(a)) == [("shop-a", "A1"), ("shop-a", "A2")]
    assert orders_of(await drain(c)) == [("shop-c", "C1")]


async def test_resuming_replays_only_the_shops_later_events_then_goes_live() -> None:
    b = bus()
    seen = b.publish(an_order("A1")).id
    b.publish(an_order("C1", shop="shop-c"))
    b.publish(an_order("A2"))
    b.publish(an_order("A3"))
    sub = b.subscribe("shop-a", seen)
    assert sub.start_id == seen
    b.publish(an_order("A4"))
    assert orders_of(await drain(sub)) == [("shop-a", "A2"), ("shop-a", "A3"), ("shop-a", "A4")]


async def test_resuming_from_the_latest_id_replays_nothing() -> None:
    b = bus()
    b.publish(an_order("A1"))
    sub = b.subscribe("shop-a", b.position)
    assert await drain(sub) == ()


async def test_a_fresh_subscription_starts_at_the_current_position() -> None:
    b = bus()
    b.publish(an_order("A1"))
    fresh = b.subscribe("shop-a")
    assert fresh.start_id == b.position
    assert await drain(fresh) == ()
    fresh.close()
    b.publish(an_order("A2"))
    # Reconnecting from the position it was given misses nothing published meanwhile.
    assert orders_of(await drain(b.subscribe("shop-a", fresh.start_id))) == [("shop-a", "A2")]


def test_history_is_bounded_per_shop() -> None:
    b = bus(capacity=3)
    for n in range(10):
        b.publish(an_order(f"A{n}"))
        b.publish(an_order(f"C{n}", shop="shop-c"))
    assert [e.order.uid for e in b._channels["shop-a"].history] == ["A7", "A8", "A9"]
    assert [e.order.uid for e in b._channels["shop-c"].history] == ["C7", "C8", "C9"]


async def test_an_id_older_than_the_history_gets_a_reset_then_live_events() -> None:
    b = bus(capacity=2)
    ids = [b.publish(an_order(f"A{n}")).id for n in range(4)]
    # A0 and A1 were evicted. From A1 everything missed (A2, A3) is still kept...
    assert orders_of(await drain(b.subscribe("shop-a", ids[1]))) == [("shop-a", "A2"), ("shop-a", "A3")]
    # ...but from A0 the client missed A1, which is gone.
    sub = b.subscribe("shop-a", ids[0])
    b.publish(an_order("A4"))
    items = await drain(sub)
    assert items is not None
    assert items[0] == Reset(ids[3], ResetReason.EVENTS_EXPIRED)
    assert orders_of(items[1:]) == [("shop-a", "A4")]


async def test_an_id_from_another_process_gets_a_reset() -> None:
    clock = ManualClock()
    before_restart = bus(clock)
    old = before_restart.publish(an_order("A1")).id
    clock.advance(5)
    b = bus(clock)
    b.publish(an_order("A2"))
    sub = b.subscribe("shop-a", old)
    assert await drain(sub) == (Reset(b.position, ResetReason.GATEWAY_RESTARTED),)


@pytest.mark.parametrize("last_event_id", ["garbage", "12-", "-3", "1795000000000-99", "1795000000000-1-1"])
async def test_an_id_this_bus_never_issued_gets_a_reset(last_event_id: str) -> None:
    b = bus()
    b.publish(an_order("A1"))
    assert await drain(b.subscribe("shop-a", last_event_id)) == (
        Reset(b.position, ResetReason.UNKNOWN_EVENT_ID),
    )


async def test_a_subscriber_that_falls_behind_is_reset_and_dropped_alone() -> None:
    b = bus(max_pending=2)
    slow, fast = b.subscribe("shop-a"), b.subscribe("shop-a")
    b.publish(an_order("A1"))
    b.publish(an_order("A2"))
    assert len(orders_of(await drain(fast))) == 2
    overflow = b.publish(an_order("A3"))
    assert await drain(slow) == (Reset(overflow.id, ResetReason.TOO_SLOW),)
    assert await drain(slow) is None
    assert slow.ended
    assert b.subscribers("shop-a") == 1
    b.publish(an_order("A4"))
    assert orders_of(await drain(fast)) == [("shop-a", "A3"), ("shop-a", "A4")]


async def test_a_long_replay_does_not_count_against_the_live_bound() -> None:
    b = bus(capacity=10, max_pending=2)
    start = b.position
    for n in range(6):
        b.publish(an_order(f"A{n}"))
    sub = b.subscribe("shop-a", start)
    b.publish(an_order("A6"))
    assert len(orders_of(await drain(sub))) == 7
    assert not sub.ended


async def test_closing_the_bus_ends_every_subscription() -> None:
    b = bus()
    sub = b.subscribe("shop-a")
    waiting = asyncio.ensure_future(sub.next(timeout_seconds=5))
    await asyncio.sleep(0)
    b.close()
    assert await waiting is None
    late = b.subscribe("shop-a")
    assert late.ended
    assert await drain(late) is None
    assert b.subscribers("shop-a") == 0


async def test_a_closed_subscription_receives_nothing_more() -> None:
    b = bus()
    sub = b.subscribe("shop-a")
    sub.close()
    sub.close()
    b.publish(an_order("A1"))
    assert b.subscribers("shop-a") == 0
    assert await drain(sub) is None


async def test_wait_final_returns_when_the_order_is_saved_final_and_not_before() -> None:
    b = bus()
    order = an_order("A1", attempts=(an_attempt("A1", 1),))
    waiting = asyncio.ensure_future(b.wait_final(order, timeout_seconds=5))
    await asyncio.sleep(0)
    b.order_changed(order, replace(order, message="still going"))
    await asyncio.sleep(0)
    assert not waiting.done()
    b.order_changed(order, replace(order, status=OrderStatus.FAILED))
    assert await waiting is True
    assert await b.wait_final(order, timeout_seconds=0) is False
    assert b._waiters == {}


def test_a_shop_at_its_stream_limit_is_refused_and_a_closed_stream_frees_its_slot() -> None:
    b = bus()
    first, second = b.subscribe("shop-a", max_streams=2), b.subscribe("shop-a", max_streams=2)
    with pytest.raises(TooManyStreams) as refused:
        b.subscribe("shop-a", max_streams=2)
    assert (refused.value.http_status, refused.value.code) == (429, "too_many_streams")
    assert b.subscribers("shop-a") == 2
    b.subscribe("shop-b", max_streams=2)  # another shop's streams do not count
    first.close()
    third = b.subscribe("shop-a", max_streams=2)
    assert not third.ended
    assert not second.ended
    assert b.subscribers("shop-a") == 2


# -- the Redis feed: several hubs (as several instances) on one real Redis -------------------------

WITHIN = 5.0  # every wait is bounded: a missing event fails the test instead of hanging it


class Instances:
    """Hubs on Redis Streams, each with its own store client, as gateway instances are."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._opened: list[tuple[EventHub, RedisStore]] = []

    async def hub(self, **options: Any) -> EventHub:
        store = await RedisStore.open(self.url)
        max_pending = options.pop("max_pending", 500)
        feed = RedisFeed(
            store.client, permits=store.permits, clock=ManualClock(), rng=random.Random(7), **options
        )
        hub = EventHub(feed, max_pending=max_pending)
        await hub.start()
        self._opened.append((hub, store))
        return hub

    async def close(self) -> None:
        for hub, store in reversed(self._opened):
            hub.close()
            await hub.stop()
            await store.close()


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[Instances]:
    opened = Instances(redis_url)
    yield opened
    await opened.close()


async def opened(sub: Subscription) -> str:
    async with asyncio.timeout(WITHIN):
        return await sub.opened()


async def collect(sub: Subscription, count: int) -> list[Item]:
    """The next `count` items of `sub`, however they are batched."""
    items: list[Item] = []
    async with asyncio.timeout(WITHIN):
        while len(items) < count:
            batch = await sub.next(timeout_seconds=WITHIN)
            assert batch is not None, f"ended after {items}"
            items.extend(batch)
    assert len(items) == count, items
    return items


def uids(items: Sequence[Item]) -> list[str]:
    assert all(isinstance(item, OrderEvent) for item in items), items
    return [item.uid for item in items if isinstance(item, OrderEvent)]


def finished(order: Order) -> Order:
    return replace(order, status=OrderStatus.SUCCEEDED, reason=None, message="charged")


async def test_a_change_saved_on_one_instance_reaches_subscribers_of_every_instance(
    instances: Instances,
) -> None:
    a, b = await instances.hub(), await instances.hub()
    on_a, on_b = a.subscribe("shop-a"), b.subscribe("shop-a")
    other_shop = b.subscribe("shop-c")
    for sub in (on_a, on_b, other_shop):
        await opened(sub)
    order = an_order("A1", attempts=(an_attempt("A1", 1),))
    a.order_changed(None, order)
    a.order_changed(order, finished(order))
    seen_a, seen_b = await collect(on_a, 2), await collect(on_b, 2)
    assert uids(seen_b) == ["A1", "A1"]
    assert [item.id for item in seen_a] == [item.id for item in seen_b]
    first, last = seen_b
    assert isinstance(first, OrderEvent)
    assert isinstance(last, OrderEvent)
    # The JSON is the public view, as GET /v1/orders/{order_id} shows it, stored once for all instances.
    assert orjson.loads(first.data) == orjson.loads(orjson.dumps(public_view(order)))
    assert (last.status, last.final, last.order_id) == (OrderStatus.SUCCEEDED, True, order.request.order_id)
    assert parse_event_id(first.id) is not None
    assert last.key > first.key
    assert await other_shop.next(timeout_seconds=0) == ()


async def test_an_id_from_one_instance_resumes_on_another_with_exactly_the_missed_events(
    instances: Instances,
) -> None:
    a, b = await instances.hub(), await instances.hub()
    watcher = a.subscribe("shop-a")
    await opened(watcher)
    for n in range(4):
        a.order_changed(None, an_order(f"A{n}"))
    a.order_changed(None, an_order("C0", shop="shop-c"))
    issued = await collect(watcher, 4)
    resumed = b.subscribe("shop-a", issued[0].id)
    assert await opened(resumed) == issued[0].id
    replayed = await collect(resumed, 3)
    assert [(item.id, uids([item])) for item in replayed] == [(item.id, uids([item])) for item in issued[1:]]
    # Then live, with nothing twice.
    a.order_changed(None, an_order("A4"))
    assert uids(await collect(resumed, 1)) == ["A4"]
    assert await resumed.next(timeout_seconds=0) == ()


async def test_a_fresh_subscription_starts_at_the_readers_place_and_resumes_from_there(
    instances: Instances,
) -> None:
    a, b = await instances.hub(), await instances.hub()
    empty = b.subscribe("shop-a")
    assert await opened(empty) == "0-0"  # nothing yet: resuming from before everything misses nothing
    a.order_changed(None, an_order("A1"))
    [first] = await collect(empty, 1)
    empty.close()
    fresh = b.subscribe("shop-a")
    assert await opened(fresh) == first.id  # where this instance has read up to
    fresh.close()
    a.order_changed(None, an_order("A2"))
    assert uids(await collect(b.subscribe("shop-a", fresh.start_id), 1)) == ["A2"]
    assert uids(await collect(b.subscribe("shop-a", "0-0"), 2)) == ["A1", "A2"]


@pytest.mark.redis
async def test_an_id_older_than_the_stream_keeps_gets_events_expired(redis_server: RedisServer) -> None:
    # Small stream nodes, so MAXLEN ~ trims after a few entries rather than after a hundred.
    redis_server.cli("config", "set", "stream-node-max-entries", "2")
    instances = Instances(redis_server.url)
    try:
        a, b = await instances.hub(capacity=4), await instances.hub(capacity=4)
        watcher = a.subscribe("shop-a")
        await opened(watcher)
        issued: list[Item] = []
        for n in range(12):  # one at a time, so the reader keeps up with the trimming
            a.order_changed(None, an_order(f"A{n}"))
            issued.extend(await collect(watcher, 1))
        assert uids(issued) == [f"A{n}" for n in range(12)]
        sub = b.subscribe("shop-a", issued[0].id)
        start = await opened(sub)
        assert start == issued[-1].id
        assert await sub.next(timeout_seconds=0) == (Reset(start, ResetReason.EVENTS_EXPIRED),)
        kept = b.subscribe("shop-a", issued[-3].id)  # still kept: replayed
        assert [item.id for item in await collect(kept, 2)] == [item.id for item in issued[-2:]]
        a.order_changed(None, an_order("A12"))
        assert uids(await collect(sub, 1)) == ["A12"]
        assert uids(await collect(watcher, 1)) == ["A12"]
        # A reader that falls further behind than the stream keeps resets its subscribers the same way.
        for n in range(13, 25):
            a.order_changed(None, an_order(f"A{n}"))  # one batch: trimmed before anyone reads it
        [reset] = await collect(watcher, 1)
        assert isinstance(reset, Reset)
        assert reset.reason is ResetReason.EVENTS_EXPIRED
        a.order_changed(None, an_order("A25"))
        assert uids(await collect(watcher, 1)) == ["A25"]
    finally:
        await instances.close()


@pytest.mark.parametrize("last_event_id", ["garbage", "12-", "1-1-1", "99999999999999-0", "first+7"])
async def test_an_id_the_stream_never_issued_gets_unknown_event_id(
    instances: Instances, last_event_id: str
) -> None:
    a = await instances.hub()
    watcher = a.subscribe("shop-a")
    await opened(watcher)
    a.order_changed(None, an_order("A1"))
    [first] = await collect(watcher, 1)
    if last_event_id == "first+7":  # in range, never trimmed, yet not an entry
        ms, seq = first.key
        last_event_id = f"{ms}-{seq + 7}"
    sub = a.subscribe("shop-a", last_event_id)
    assert await opened(sub) == first.id
    assert await sub.next(timeout_seconds=0) == (Reset(first.id, ResetReason.UNKNOWN_EVENT_ID),)
    assert await collect(a.subscribe("shop-b", "1-0"), 1) == [Reset("0-0", ResetReason.UNKNOWN_EVENT_ID)]


async def test_a_client_ahead_of_this_instance_gets_nothing_twice(instances: Instances) -> None:
    a = await instances.hub()
    watcher = a.subscribe("shop-a")
    await opened(watcher)
    for n in range(3):
        a.order_changed(None, an_order(f"A{n}"))
    issued = await collect(watcher, 3)
    # A second instance that has not read the shop yet places a client that has seen everything.
    b = await instances.hub()
    sub = b.subscribe("shop-a", issued[-1].id)
    assert await opened(sub) == issued[-1].id
    a.order_changed(None, an_order("A3"))
    assert uids(await collect(sub, 1)) == ["A3"]


async def test_a_subscriber_that_falls_behind_is_reset_and_dropped(instances: Instances) -> None:
    a = await instances.hub(max_pending=2)
    slow, fast = a.subscribe("shop-a"), a.subscribe("shop-a")
    await opened(slow)
    await opened(fast)
    a.order_changed(None, an_order("A1"))
    a.order_changed(None, an_order("A2"))
    assert uids(await collect(fast, 2)) == ["A1", "A2"]
    a.order_changed(None, an_order("A3"))
    [third] = await collect(fast, 1)
    items = await collect(slow, 1)
    assert items == [Reset(third.id, ResetReason.TOO_SLOW)]
    assert await slow.next(timeout_seconds=0) is None
    assert a.subscribers("shop-a") == 1


async def test_wait_final_returns_when_any_instance_saves_a_final_change(instances: Instances) -> None:
    a, b = await instances.hub(), await instances.hub()
    order = an_order("A1", attempts=(an_attempt("A1", 1),))
    a.order_changed(None, order)
    waiting = asyncio.ensure_future(b.wait_final(order, WITHIN))
    # B follows the shop from where the stream ends when it starts to: a subscriber placed there
    # says when that is, and the final change is saved after it.
    follower = b.subscribe("shop-a")
    await opened(follower)
    a.order_changed(order, finished(order))
    assert await waiting is True
    # Saved here, it is heard at once; final already, there is nothing to wait for.
    here = an_order("A2")
    waiting = asyncio.ensure_future(a.wait_final(here, WITHIN))
    await asyncio.sleep(0)
    a.order_changed(here, finished(here))
    assert await waiting is True
    assert await a.wait_final(finished(here), 0) is True
    assert await b.wait_final(an_order("A3"), 0) is False
    assert await b.wait_final(an_order("A3"), 0.05) is False


async def test_events_dropped_before_redis_took_them_reach_subscribers_as_a_reset(
    instances: Instances,
) -> None:
    a = await instances.hub(queue_limit=2)
    b = await instances.hub()
    sub = b.subscribe("shop-a")
    await opened(sub)
    # Four changes in one go: two are queued, two dropped before the publisher runs.
    for n in range(4):
        a.order_changed(None, an_order(f"A{n}"))
    items = await collect(sub, 3)
    assert isinstance(items[0], Reset)
    assert items[0].reason is ResetReason.EVENTS_LOST
    assert uids(items[1:]) == ["A0", "A1"]
    # A client resuming from before the gap crosses it too.
    replay = await collect(b.subscribe("shop-a", "0-0"), 3)
    assert [(type(item), item.id) for item in replay] == [(type(item), item.id) for item in items]


async def test_stopping_hands_on_the_events_still_queued(instances: Instances) -> None:
    a = await instances.hub()
    a.order_changed(None, an_order("A1"))
    await a.stop()  # before its publisher ever ran
    b = await instances.hub()
    assert uids(await collect(b.subscribe("shop-a", "0-0"), 1)) == ["A1"]


@pytest.mark.redis
async def test_redis_down_never_blocks_changes_and_subscribers_get_a_reset_when_it_is_back(
    redis_server: RedisServer,
) -> None:
    instances = Instances(redis_server.url)
    try:
        a = await instances.hub()
        sub = a.subscribe("shop-a")
        await opened(sub)
        a.order_changed(None, an_order("A1"))
        [first] = await collect(sub, 1)
        redis_server.stop()
        a.order_changed(None, an_order("A2"))  # returns at once: queued for when Redis answers
        refused = a.subscribe("shop-a", first.id)
        with pytest.raises(StoreUnavailable):
            await opened(refused)
        assert refused.ended
        redis_server.start()  # empty: what the stream held is gone
        items = await collect(sub, 1)
        assert items[0] == Reset(items[0].id, ResetReason.EVENTS_LOST)
        a.order_changed(None, an_order("A3"))
        async with asyncio.timeout(WITHIN):
            while "A3" not in uids([i for i in await collect(sub, 1) if isinstance(i, OrderEvent)]):
                pass
    finally:
        await instances.close()
