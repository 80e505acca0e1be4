"""The `Store` contract for the figures (CONTRACT.md §9) and the notification gauge, run against every
backend: orders by creation time, read in pages, and the count of notifications still to send.

Uses the backends of `test_contract.py`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.order import Notification, Order, OrderStatus, Reason
from gateway.store import Store, open_store
from tests.store.samples import T0, an_order
from tests.store.test_contract import durable_store_url, redis_cluster, redis_server, store, store_url

__all__ = ["durable_store_url", "redis_cluster", "redis_server", "store", "store_url"]  # fixtures


def placed(uid: str, created_at: float, **changes: Any) -> Order:
    return an_order(uid, created_at=created_at, updated_at=created_at, **changes)


async def read_all(store: Store, since: float, until: float, page: int) -> list[str]:
    """Every page of the listing, as uids, the way `/admin/stats` reads it."""
    uids: list[str] = []
    after: tuple[float, str] | None = None
    while True:
        found = await store.orders_created(since, until, after=after, limit=page)
        uids.extend(o.uid for o in found)
        if len(found) < page:
            return uids
        after = (found[-1].created_at, found[-1].uid)


async def test_orders_created_lists_the_window_by_creation_time_then_uid(store: Store) -> None:
    for uid, at in [("GW5", T0 + 5), ("GW1", T0), ("GW3", T0 + 3), ("GW3b", T0 + 3), ("GW9", T0 + 10)]:
        await store.create_order(placed(uid, at))
    await store.create_order(placed("GW0", T0 - 0.001))  # just before the window

    found = await store.orders_created(T0, T0 + 10)

    # from inclusive, until exclusive; ties in time by uid
    assert [o.uid for o in found] == ["GW1", "GW3", "GW3b", "GW5"]


async def test_orders_created_returns_the_stored_orders(store: Store) -> None:
    order, _ = await store.create_order(placed("GW1", T0 + 1))
    saved = await store.save_order(replace(order, status=OrderStatus.SUCCEEDED, reason=None))

    assert await store.orders_created(T0, T0 + 2) == [saved]


async def test_a_save_keeps_an_order_at_its_creation_time(store: Store) -> None:
    order, _ = await store.create_order(placed("GW1", T0 + 1))
    await store.create_order(placed("GW2", T0 + 2))
    await store.save_order(replace(order, updated_at=T0 + 500, message="later"))

    assert [o.uid for o in await store.orders_created(T0, T0 + 3)] == ["GW1", "GW2"]
    assert await store.orders_created(T0 + 400, T0 + 600) == []


async def test_pages_read_every_order_once(store: Store) -> None:
    expected = []
    for i in range(23):
        uid = f"GW{i:03d}"
        # several orders per instant, so pages end inside a tie
        await store.create_order(placed(uid, T0 + i // 4))
        expected.append(uid)

    assert await read_all(store, T0, T0 + 100, page=5) == expected
    assert await read_all(store, T0, T0 + 100, page=1) == expected
    assert await read_all(store, T0 + 2, T0 + 4, page=3) == expected[8:16]


async def test_saves_while_reading_pages_neither_skip_nor_repeat_an_order(store: Store) -> None:
    orders = []
    for i in range(10):
        order, _ = await store.create_order(placed(f"GW{i:02d}", T0 + i))
        orders.append(order)

    first = await store.orders_created(T0, T0 + 100, limit=4)
    for order in orders:  # every order moves in the listings by update time
        await store.save_order(replace(order, updated_at=T0 + 1000, status=OrderStatus.FAILED, reason=None))
    rest = await store.orders_created(T0, T0 + 100, after=(first[-1].created_at, first[-1].uid), limit=100)

    assert [o.uid for o in [*first, *rest]] == [o.uid for o in orders]


async def test_orders_created_with_no_room_or_an_empty_window_is_empty(store: Store) -> None:
    await store.create_order(placed("GW1", T0))

    assert await store.orders_created(T0, T0 + 1, limit=0) == []
    assert await store.orders_created(T0 + 1, T0 + 1) == []


async def test_count_notifications_pending_counts_orders_with_a_notice_to_send(store: Store) -> None:
    assert await store.count_notifications_pending() == 0
    due_now, _ = await store.create_order(
        placed("GW1", T0, status=OrderStatus.SUCCEEDED, reason=None, notification=Notification(due_at=T0))
    )
    await store.create_order(  # retrying later still counts: it is not delivered yet
        placed(
            "GW2",
            T0,
            status=OrderStatus.FAILED,
            reason=Reason.SUPPLIER_FAILED,
            notification=Notification(due_at=T0 + 3600, attempts=2),
        )
    )
    await store.create_order(placed("GW3", T0))  # processing: nothing to send yet

    assert await store.count_notifications_pending() == 2

    delivered = Notification(due_at=None, attempts=1, delivered_at=T0 + 1)
    await store.save_order(replace(due_now, notification=delivered))

    assert await store.count_notifications_pending() == 1


async def test_orders_created_survives_a_restart(durable_store_url: str) -> None:
    first = await open_store(durable_store_url)
    try:
        await first.create_order(placed("GW1", T0 + 1))
    finally:
        await first.close()
    reopened = await open_store(durable_store_url)
    try:
        assert [o.uid for o in await reopened.orders_created(T0, T0 + 2)] == ["GW1"]
    finally:
        await reopened.close()


async def test_a_sqlite_file_from_before_the_creation_index_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    store = await open_store(url)
    try:
        await store.create_order(placed("GW1", T0 + 1))
    finally:
        await store.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP INDEX orders_by_creation")
        db.execute("ALTER TABLE orders DROP COLUMN created_at")

    reopened = await open_store(url)
    try:
        assert [o.uid for o in await reopened.orders_created(T0, T0 + 2)] == ["GW1"]
    finally:
        await reopened.close()
