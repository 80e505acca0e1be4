"""The order event bus: what counts as an event, per-shop history and its bound, resuming, resets, fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

import orjson
import pytest
from structlog.testing import capture_logs

from adapters.interface import Outcome
from gateway.clock import ManualClock
from gateway.errors import TooManyStreams
from gateway.events import EventBus, Item, OrderEvent, Reset, ResetReason, Subscription
from gateway.order import Notification, OrderStatus
from gateway.views import public_view
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
