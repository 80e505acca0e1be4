"""The `Store` contract, run against every backend: what the order lifecycle relies on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.interface import Outcome
from gateway.order import Notification, Order, OrderStatus, Reason
from gateway.store import StaleOrder, Store, StoreError, open_store
from tests.redis_servers import RedisCluster, RedisServer, redis_cluster, redis_server
from tests.store.samples import T0, a_full_order, an_attempt, an_order

__all__ = ["redis_cluster", "redis_server"]  # fixtures, asked for by name in `_url`


BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-cluster", marks=pytest.mark.redis),
]


def _url(request: pytest.FixtureRequest, backend: str, sqlite_file: Path) -> str:
    match backend:
        case "memory":
            return "memory://"
        case "sqlite":
            return f"sqlite:///{sqlite_file}"
        case "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            return server.url
        case "redis-cluster":
            cluster: RedisCluster = request.getfixturevalue("redis_cluster")
            return cluster.url
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, request.param, tmp_path / "orders.db")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


@pytest.fixture(params=BACKENDS[1:])
def durable_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The backends that keep what they stored across a restart (memory:// keeps nothing).

    For Redis the gateway restarts, not the server: what the server keeps is its own persistence's
    business (the test servers keep nothing across their own restarts).
    """
    return _url(request, request.param, tmp_path / "durable.db")


# creation and idempotency


async def test_create_stores_a_new_order(store: Store) -> None:
    order = an_order()

    assert await store.create_order(order) == (order, True)

    assert await store.get_order(order.shop, order.order_id) == order
    assert await store.get_order_by_uid(order.uid) == order


async def test_create_of_a_known_key_returns_the_stored_order(store: Store) -> None:
    first = an_order("GW1", order_id="o-1")
    await store.create_order(first)

    stored, created = await store.create_order(an_order("GW2", order_id="o-1", updated_at=T0 + 5))

    assert (stored, created) == (first, False)
    assert await store.get_order_by_uid("GW2") is None


async def test_same_order_id_at_another_shop_is_another_order(store: Store) -> None:
    await store.create_order(an_order("GW1", shop="shop-a", order_id="o-1"))

    _, created = await store.create_order(an_order("GW2", shop="shop-b", order_id="o-1"))

    assert created


async def test_of_20_concurrent_creates_exactly_one_creates(store: Store) -> None:
    candidates = [an_order(f"GW{i:02d}", order_id="o-race") for i in range(20)]

    results = await asyncio.gather(*(store.create_order(o) for o in candidates))

    winners = [order for order, created in results if created]
    assert len(winners) == 1
    assert all(order == winners[0] for order, _ in results)
    assert await store.get_order("shop-a", "o-race") == winners[0]


async def test_create_reusing_a_uid_for_another_key_fails(store: Store) -> None:
    await store.create_order(an_order("GW1", order_id="o-1"))

    with pytest.raises(StoreError):
        await store.create_order(an_order("GW1", order_id="o-2"))
    assert await store.get_order("shop-a", "o-2") is None


# compare-and-set saves


async def test_save_bumps_the_version(store: Store) -> None:
    order, _ = await store.create_order(an_order())

    saved = await store.save_order(replace(order, updated_at=T0 + 1, message="sent"))

    assert saved == replace(order, updated_at=T0 + 1, message="sent", version=order.version + 1)
    assert await store.get_order_by_uid(order.uid) == saved
    assert (await store.save_order(saved)).version == order.version + 2


async def test_save_from_a_stale_version_raises_and_changes_nothing(store: Store) -> None:
    order, _ = await store.create_order(an_order())
    saved = await store.save_order(replace(order, message="first"))

    with pytest.raises(StaleOrder) as raised:
        await store.save_order(replace(order, message="second"))

    assert raised.value.uid == order.uid
    assert await store.get_order_by_uid(order.uid) == saved


async def test_of_concurrent_saves_from_one_version_exactly_one_lands(store: Store) -> None:
    order, _ = await store.create_order(an_order())

    results = await asyncio.gather(
        *(store.save_order(replace(order, message=f"writer {i}")) for i in range(10)),
        return_exceptions=True,
    )

    landed = [r for r in results if not isinstance(r, BaseException)]
    assert len(landed) == 1
    assert all(isinstance(r, StaleOrder) for r in results if r not in landed)
    assert await store.get_order_by_uid(order.uid) == landed[0]


async def test_save_of_an_order_never_created_fails(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.save_order(an_order())


async def test_every_field_round_trips(store: Store) -> None:
    order = a_full_order()

    await store.create_order(order)
    assert await store.get_order_by_uid(order.uid) == order

    saved = await store.save_order(replace(order, updated_at=T0 + 50, status=OrderStatus.SUCCEEDED))
    assert await store.get_order_by_uid(order.uid) == saved
    assert await store.get_order(order.shop, order.order_id) == saved


# lookups


async def test_lookup_by_upstream_id_needs_a_matching_attempt(store: Store) -> None:
    order = an_order("GW77", attempts=(an_attempt("GW77", 1), an_attempt("GW77", 2)))
    await store.create_order(order)

    assert await store.get_order_by_upstream_id("GW7701") == order
    assert await store.get_order_by_upstream_id("GW7702") == order
    assert await store.get_order_by_upstream_id("GW7703") is None  # the uid exists, the attempt does not
    assert await store.get_order_by_upstream_id("GW7801") is None
    assert await store.get_order_by_upstream_id("01") is None
    assert await store.get_order_by_upstream_id("") is None


async def test_lookups_of_unknown_orders_return_none(store: Store) -> None:
    await store.create_order(an_order("GW1", order_id="o-1"))

    assert await store.get_order("shop-a", "o-2") is None
    assert await store.get_order("shop-b", "o-1") is None
    assert await store.get_order_by_uid("GW2") is None


# listings


async def test_list_orders_newest_first_filtered_and_limited(store: Store) -> None:
    specs = [
        ("GW1", T0 + 1, OrderStatus.SUCCEEDED, None),
        ("GW2", T0 + 4, OrderStatus.PROCESSING, Reason.AWAITING_SUPPLIER),
        ("GW3", T0 + 3, OrderStatus.FAILED, Reason.SUPPLIER_FAILED),
        ("GW4", T0 + 2, OrderStatus.PROCESSING, Reason.OUTCOME_UNKNOWN),
        ("GW5", T0 + 5, OrderStatus.FAILED, Reason.ACCOUNT_INVALID),
        ("GW6", T0 + 0, OrderStatus.PROCESSING, Reason.AWAITING_SUPPLIER),
    ]
    for uid, updated_at, status, reason in specs:
        await store.create_order(an_order(uid, updated_at=updated_at, status=status, reason=reason))

    async def uids(
        status: OrderStatus | None = None, reason: Reason | None = None, limit: int = 100
    ) -> list[str]:
        return [o.uid for o in await store.list_orders(status=status, reason=reason, limit=limit)]

    assert await uids() == ["GW5", "GW2", "GW3", "GW4", "GW1", "GW6"]
    assert await uids(limit=2) == ["GW5", "GW2"]
    assert await uids(limit=0) == []
    assert await uids(status=OrderStatus.PROCESSING) == ["GW2", "GW4", "GW6"]
    assert await uids(status=OrderStatus.FAILED) == ["GW5", "GW3"]
    assert await uids(reason=Reason.AWAITING_SUPPLIER) == ["GW2", "GW6"]
    assert await uids(status=OrderStatus.FAILED, reason=Reason.SUPPLIER_FAILED) == ["GW3"]
    assert await uids(status=OrderStatus.SUCCEEDED, reason=Reason.SUPPLIER_FAILED) == []
    assert await uids(status=OrderStatus.PROCESSING, limit=1) == ["GW2"]


async def test_list_orders_follows_saves(store: Store) -> None:
    old, _ = await store.create_order(an_order("GW1", updated_at=T0))
    await store.create_order(an_order("GW2", updated_at=T0 + 1))

    await store.save_order(replace(old, updated_at=T0 + 2, status=OrderStatus.SUCCEEDED, reason=None))

    assert [o.uid for o in await store.list_orders()] == ["GW1", "GW2"]
    assert [o.uid for o in await store.list_orders(status=OrderStatus.PROCESSING)] == ["GW2"]


async def test_equal_update_times_list_in_uid_order(store: Store) -> None:
    for uid in ("GW2", "GW3", "GW1"):
        await store.create_order(an_order(uid, updated_at=T0))

    assert [o.uid for o in await store.list_orders()] == ["GW3", "GW2", "GW1"]
    assert [o.uid for o in await store.processing_orders()] == ["GW1", "GW2", "GW3"]


async def test_processing_orders_oldest_first_and_final_ones_leave(store: Store) -> None:
    stored = {}
    for uid, updated_at in (("GW1", T0 + 3), ("GW2", T0 + 1), ("GW3", T0 + 2), ("GW4", T0)):
        stored[uid], _ = await store.create_order(an_order(uid, updated_at=updated_at))
    await store.create_order(an_order("GW5", status=OrderStatus.SUCCEEDED, reason=None))

    assert [o.uid for o in await store.processing_orders()] == ["GW4", "GW2", "GW3", "GW1"]
    assert [o.uid for o in await store.processing_orders(limit=2)] == ["GW4", "GW2"]

    await store.save_order(replace(stored["GW4"], updated_at=T0 + 9, status=OrderStatus.FAILED))
    await store.save_order(replace(stored["GW2"], updated_at=T0 + 8, reason=Reason.OUTCOME_UNKNOWN))

    assert [o.uid for o in await store.processing_orders()] == ["GW3", "GW1", "GW2"]


async def test_count_processing_counts_open_orders_by_reason(store: Store) -> None:
    for uid, reason in (
        ("GW1", Reason.AWAITING_SUPPLIER),
        ("GW2", Reason.OUTCOME_UNKNOWN),
        ("GW3", Reason.OUTCOME_UNKNOWN),
    ):
        await store.create_order(an_order(uid, reason=reason))
    done, _ = await store.create_order(an_order("GW4"))
    await store.save_order(replace(done, status=OrderStatus.FAILED, reason=Reason.SUPPLIER_FAILED))

    counts = await store.count_processing()

    assert {reason: n for reason, n in counts.items() if n} == {
        Reason.AWAITING_SUPPLIER: 1,
        Reason.OUTCOME_UNKNOWN: 2,
    }


# the notification outbox


async def test_due_notifications_are_the_outbox_soonest_first(store: Store) -> None:
    pending = {}
    for uid, due in (("GW1", T0 + 5), ("GW2", T0 + 1), ("GW3", T0 + 3)):
        pending[uid], _ = await store.create_order(
            an_order(uid, status=OrderStatus.SUCCEEDED, reason=None, notification=Notification(due_at=due))
        )
    await store.create_order(an_order("GW4"))  # nothing to notify
    await store.create_order(
        an_order("GW5", status=OrderStatus.FAILED, notification=Notification(due_at=None, delivered_at=T0))
    )

    assert [o.uid for o in await store.due_notifications(T0 + 10)] == ["GW2", "GW3", "GW1"]
    assert [o.uid for o in await store.due_notifications(T0 + 3)] == ["GW2", "GW3"]
    assert [o.uid for o in await store.due_notifications(T0 + 10, limit=1)] == ["GW2"]

    delivered = replace(pending["GW2"].notification, due_at=None, delivered_at=T0 + 2, attempts=1)
    await store.save_order(replace(pending["GW2"], notification=delivered))
    later = replace(pending["GW3"].notification, due_at=T0 + 60, attempts=1)
    await store.save_order(replace(pending["GW3"], notification=later))
    assert [o.uid for o in await store.due_notifications(T0 + 10)] == ["GW1"]
    assert [o.uid for o in await store.due_notifications(T0 + 60)] == ["GW1", "GW3"]


# the reconciler's schedule


def _uids(orders: Sequence[Order]) -> list[str]:
    return sorted(o.uid for o in orders)


async def test_claim_checks_hands_out_due_orders_once_until_the_claim_ends(store: Store) -> None:
    for uid, check in (("GW1", T0 + 5), ("GW2", T0 + 1), ("GW3", T0 + 30)):
        await store.create_order(an_order(uid, check_at=check))
    await store.create_order(an_order("GW4", check_at=None))  # never scheduled: due at once
    await store.create_order(an_order("GW5", status=OrderStatus.SUCCEEDED, reason=None, check_at=T0))

    assert _uids(await store.claim_checks(T0, until=T0 + 20)) == ["GW4"]
    assert _uids(await store.claim_checks(T0 + 10, until=T0 + 20)) == ["GW1", "GW2"]
    # Claimed: nobody else gets them until the claim ends, and the orders themselves are untouched.
    assert _uids(await store.claim_checks(T0 + 19, until=T0 + 40)) == []
    stored = await store.get_order_by_uid("GW1")
    assert stored is not None
    assert (stored.version, stored.check_at) == (0, T0 + 5)
    assert _uids(await store.claim_checks(T0 + 30, until=T0 + 40)) == ["GW1", "GW2", "GW3", "GW4"]


async def test_a_save_sets_the_check_time_anew_and_a_final_order_leaves_the_schedule(store: Store) -> None:
    first, _ = await store.create_order(an_order("GW1", check_at=T0))
    second, _ = await store.create_order(an_order("GW2", check_at=T0))
    assert _uids(await store.claim_checks(T0, until=T0 + 100)) == ["GW1", "GW2"]

    await store.save_order(replace(first, check_at=T0 + 5))  # a change after the claim
    await store.save_order(replace(second, status=OrderStatus.SUCCEEDED, reason=None, check_at=T0))

    assert _uids(await store.claim_checks(T0 + 10, until=T0 + 100)) == ["GW1"]
    assert _uids(await store.claim_checks(T0 + 1000, until=T0 + 2000)) == ["GW1"]


async def test_of_concurrent_claims_each_due_order_goes_to_one(store: Store) -> None:
    for i in range(40):
        await store.create_order(an_order(f"GW{i:04d}", check_at=T0 + i % 7))

    claims = await asyncio.gather(*(store.claim_checks(T0 + 10, until=T0 + 60, limit=50) for _ in range(4)))

    claimed = [order.uid for batch in claims for order in batch]
    assert sorted(claimed) == [f"GW{i:04d}" for i in range(40)]


async def test_a_limited_claim_loses_nothing_it_does_not_hand_out(store: Store) -> None:
    for i in range(200):
        await store.create_order(an_order(f"GW{i:04d}", check_at=T0))

    taken = await store.claim_checks(T0, until=T0 + 60, limit=3)
    rest = await store.claim_checks(T0, until=T0 + 60, limit=1000)

    assert 1 <= len(taken) < 200
    assert len(taken) + len(rest) == 200


# nonces


async def test_a_nonce_is_claimed_once_per_shop(store: Store) -> None:
    assert await store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0)
    assert not await store.claim_nonce("shop-a", "n1", expires_at=T0 + 400, now=T0 + 1)
    assert await store.claim_nonce("shop-b", "n1", expires_at=T0 + 300, now=T0 + 1)
    assert await store.claim_nonce("shop-a", "n2", expires_at=T0 + 300, now=T0 + 1)


async def test_an_expired_nonce_can_be_claimed_again(store: Store) -> None:
    await store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0)

    assert not await store.claim_nonce("shop-a", "n1", expires_at=T0 + 599, now=T0 + 299.9)
    assert await store.claim_nonce("shop-a", "n1", expires_at=T0 + 600, now=T0 + 300)
    assert not await store.claim_nonce("shop-a", "n1", expires_at=T0 + 900, now=T0 + 599)


async def test_a_pending_claim_decides_at_once_and_is_recorded_when_asked(store: Store) -> None:
    pending = await store.claim_nonce_pending("shop-a", "n1", expires_at=T0 + 300, now=T0)
    assert pending is not None
    assert await store.claim_nonce_pending("shop-a", "n1", expires_at=T0 + 400, now=T0 + 1) is None
    assert not await store.claim_nonce("shop-a", "n1", expires_at=T0 + 400, now=T0 + 1)
    await pending.recorded()
    assert await store.claim_nonce_pending("shop-b", "n1", expires_at=T0 + 300, now=T0 + 1) is not None


async def test_concurrent_pending_claims_of_one_nonce_admit_one(store: Store) -> None:
    claims = await asyncio.gather(
        *(store.claim_nonce_pending("shop-a", "n1", expires_at=T0 + 300, now=T0) for _ in range(10))
    )

    assert [c is None for c in claims].count(False) == 1


async def test_concurrent_claims_of_one_nonce_admit_one(store: Store) -> None:
    claims = await asyncio.gather(
        *(store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0) for _ in range(10))
    )

    assert sorted(claims) == [False] * 9 + [True]


async def test_many_nonces_claimed_at_once_each_land_once(store: Store) -> None:
    nonces = [f"nonce-{i:04d}" for i in range(300)]

    first = await asyncio.gather(*(store.claim_nonce("shop-a", n, T0 + 300, T0) for n in nonces))
    again = await asyncio.gather(*(store.claim_nonce("shop-a", n, T0 + 301, T0 + 1) for n in nonces))

    assert first == [True] * len(nonces)
    assert again == [False] * len(nonces)


async def test_a_claimed_nonce_is_refused_after_a_restart_until_it_expires(durable_store_url: str) -> None:
    store = await open_store(durable_store_url)
    assert await store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0)
    await store.close()

    reopened = await open_store(durable_store_url)
    try:
        assert not await reopened.claim_nonce("shop-a", "n1", expires_at=T0 + 400, now=T0 + 1)
        assert await reopened.claim_nonce("shop-b", "n1", expires_at=T0 + 400, now=T0 + 1)
        # The refused claim did not extend the first one: at its expiry the nonce is free again.
        assert await reopened.claim_nonce("shop-a", "n1", expires_at=T0 + 600, now=T0 + 300)
        assert not await reopened.claim_nonce("shop-a", "n1", expires_at=T0 + 601, now=T0 + 301)
    finally:
        await reopened.close()


# lifecycle


async def test_ping_answers(store: Store) -> None:
    await store.ping()


def _operations(store: Store) -> list[Callable[[], Awaitable[object]]]:
    order = an_order()
    return [
        lambda: store.create_order(order),
        lambda: store.save_order(order),
        lambda: store.get_order(order.shop, order.order_id),
        lambda: store.get_order_by_uid(order.uid),
        lambda: store.get_order_by_upstream_id(order.uid + "01"),
        store.list_orders,
        store.processing_orders,
        store.count_processing,
        lambda: store.claim_checks(T0, until=T0 + 1),
        lambda: store.claim_nonce("shop-a", "n1", expires_at=T0 + 1, now=T0),
        store.ping,
    ]


async def test_a_closed_store_refuses_every_operation(store: Store) -> None:
    await store.create_order(an_order())
    await store.close()

    for operation in _operations(store):
        with pytest.raises(StoreError):
            await operation()
    await store.close()  # closing twice is harmless


async def test_outcome_of_each_attempt_survives(store: Store) -> None:
    attempts = tuple(an_attempt("GW9", n, outcome=outcome) for n, outcome in enumerate(Outcome, start=1))
    order = an_order("GW9", attempts=attempts)
    await store.create_order(order)

    stored = await store.get_order_by_uid("GW9")

    assert stored is not None
    assert [a.outcome for a in stored.attempts] == list(Outcome)
