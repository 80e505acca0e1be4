"""The `Store` contract for the shop guards (CONTRACT.md §7), run against every backend: account records
(reserve, confirm, release) and blocked accounts.

Uses the backends of `test_contract.py`; the Redis script is held to the Python rule step by step.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import Store, StoreError, open_store
from gateway.store.blocks import AccountBlock
from gateway.store.reservations import (
    AccountBook,
    AccountClaim,
    AccountEntry,
    EntryState,
    Refusal,
    Release,
)
from tests.store.samples import T0
from tests.store.test_contract import durable_store_url, redis_cluster, redis_server, store, store_url

__all__ = ["durable_store_url", "redis_cluster", "redis_server", "store", "store_url"]  # fixtures

ACCOUNT = "13800138000"
PRODUCT = "mobile.cmcc.50"
DAY = 86_400.0


def a_claim(
    order_id: str,
    *,
    shop: str = "shop-a",
    account: str = ACCOUNT,
    product: str = PRODUCT,
    value_cents: int = 5_000,
    now: float = T0,
    window: float | None = None,
    day_start: float = T0 - 3_600,
    max_orders: int | None = None,
    max_value_cents: int | None = None,
    lease: float = 60.0,
    expires_at: float | None = None,
) -> AccountClaim:
    return AccountClaim(
        shop=shop,
        account=account,
        entry=AccountEntry(
            order_id=order_id,
            product=product,
            value_cents=value_cents,
            at=now,
            expires_at=expires_at if expires_at is not None else day_start + DAY,
            lease_until=now + lease,
        ),
        duplicate_since=None if window is None else now - window,
        day_start=day_start,
        max_orders=max_orders,
        max_value_cents=max_value_cents,
    )


def confirmed(claim: AccountClaim) -> AccountEntry:
    return replace(claim.entry, state=EntryState.CONFIRMED, lease_until=0.0)


# the duplicate guard


async def test_a_second_order_id_within_the_window_is_a_duplicate_of_the_first(store: Store) -> None:
    assert (await store.reserve_account(a_claim("o-1", window=60))).refusal is None

    verdict = await store.reserve_account(a_claim("o-2", now=T0 + 59, window=60))

    assert verdict.refusal is Refusal.DUPLICATE
    assert [e.order_id for e in verdict.blocking] == ["o-1"]
    assert verdict.blocking[0].state is EntryState.PENDING
    # Refused: nothing recorded, so the first is still the only one.
    again = await store.reserve_account(a_claim("o-3", now=T0 + 59, window=60))
    assert [e.order_id for e in again.blocking] == ["o-1"]


async def test_outside_the_window_or_for_another_product_or_account_is_no_duplicate(store: Store) -> None:
    await store.reserve_account(a_claim("o-1", window=60))

    later = await store.reserve_account(a_claim("o-2", now=T0 + 60, window=60))
    other_product = await store.reserve_account(a_claim("o-3", product="mobile.cmcc.100", window=60))
    other_account = await store.reserve_account(a_claim("o-4", account="13900139000", window=60))
    other_shop = await store.reserve_account(a_claim("o-5", shop="shop-b", window=60))

    assert [later.refusal, other_product.refusal, other_account.refusal, other_shop.refusal] == [None] * 4


async def test_duplicates_are_listed_newest_first(store: Store) -> None:
    await store.reserve_account(a_claim("o-1"))
    await store.reserve_account(a_claim("o-2", now=T0 + 1))

    verdict = await store.reserve_account(a_claim("o-3", now=T0 + 2, window=60))

    assert [e.order_id for e in verdict.blocking] == ["o-2", "o-1"]


async def test_the_same_order_id_again_passes_and_counts_once(store: Store) -> None:
    """Another request for the very same order (a retry racing the first) is not its own duplicate."""
    assert (await store.reserve_account(a_claim("o-1", window=60, max_orders=1))).refusal is None

    again = await store.reserve_account(a_claim("o-1", now=T0 + 1, window=60, max_orders=1))
    other = await store.reserve_account(a_claim("o-2", now=T0 + 1, max_orders=1))

    assert again.refusal is None
    assert other.refusal is Refusal.ORDERS_PER_DAY
    assert [e.order_id for e in other.blocking] == ["o-1"]
    # The retry extended the reservation's lease to its own.
    assert other.blocking[0].lease_until == T0 + 61


async def test_of_20_concurrent_order_ids_for_one_account_exactly_one_is_reserved(store: Store) -> None:
    claims = [a_claim(f"o-{i:02d}", window=600) for i in range(20)]

    verdicts = await asyncio.gather(*(store.reserve_account(c) for c in claims))

    passed = [c.entry.order_id for c, v in zip(claims, verdicts, strict=True) if v.refusal is None]
    assert len(passed) == 1
    refused = [v for v in verdicts if v.refusal is not None]
    assert all(v.refusal is Refusal.DUPLICATE and [e.order_id for e in v.blocking] == passed for v in refused)


# per-account limits


@pytest.mark.parametrize("limit", [1, 3])
async def test_of_n_plus_k_concurrent_orders_exactly_n_are_reserved(store: Store, limit: int) -> None:
    claims = [a_claim(f"o-{i:02d}", max_orders=limit) for i in range(limit + 7)]

    verdicts = await asyncio.gather(*(store.reserve_account(c) for c in claims))

    assert sum(v.refusal is None for v in verdicts) == limit
    assert {v.refusal for v in verdicts if v.refusal is not None} == {Refusal.ORDERS_PER_DAY}


async def test_the_value_limit_adds_face_value_times_quantity(store: Store) -> None:
    # 500.00 a day: 300 + 200 pass, another 0.01 does not; a smaller order never jumps the queue.
    assert (
        await store.reserve_account(a_claim("o-1", value_cents=30_000, max_value_cents=50_000))
    ).refusal is None
    assert (
        await store.reserve_account(a_claim("o-2", value_cents=20_000, max_value_cents=50_000))
    ).refusal is None

    over = await store.reserve_account(a_claim("o-3", value_cents=1, max_value_cents=50_000))

    assert over.refusal is Refusal.VALUE_PER_DAY
    assert sorted(e.order_id for e in over.blocking) == ["o-1", "o-2"]


async def test_concurrent_orders_never_exceed_the_value_limit(store: Store) -> None:
    claims = [a_claim(f"o-{i:02d}", value_cents=5_000, max_value_cents=12_000) for i in range(10)]

    verdicts = await asyncio.gather(*(store.reserve_account(c) for c in claims))

    assert sum(v.refusal is None for v in verdicts) == 2


async def test_only_todays_orders_count(store: Store) -> None:
    midnight = T0 + 3_600
    await store.reserve_account(a_claim("o-1", max_orders=1, day_start=midnight - DAY))

    today = await store.reserve_account(
        a_claim("o-2", now=midnight - 1, max_orders=1, day_start=midnight - DAY)
    )
    tomorrow = await store.reserve_account(a_claim("o-3", now=midnight, max_orders=1, day_start=midnight))

    assert today.refusal is Refusal.ORDERS_PER_DAY
    assert tomorrow.refusal is None


async def test_the_duplicate_guard_is_checked_before_the_limits(store: Store) -> None:
    await store.reserve_account(a_claim("o-1"))

    verdict = await store.reserve_account(a_claim("o-2", window=60, max_orders=1))

    assert verdict.refusal is Refusal.DUPLICATE


# confirm and release


async def test_a_failed_order_is_released_and_no_longer_counts(store: Store) -> None:
    first = a_claim("o-1", window=60, max_orders=1)
    await store.reserve_account(first)
    await store.confirm_account_order("shop-a", ACCOUNT, confirmed(first))

    assert await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.FAILED, T0 + 1)
    assert not await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.FAILED, T0 + 1)

    assert (await store.reserve_account(a_claim("o-2", now=T0 + 2, window=60, max_orders=1))).refusal is None


async def test_a_confirm_arriving_after_the_failure_does_not_count_it_again(store: Store) -> None:
    first = a_claim("o-1", max_orders=1)
    await store.reserve_account(first)
    await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.FAILED, T0 + 1)

    await store.confirm_account_order("shop-a", ACCOUNT, confirmed(first))

    assert (await store.reserve_account(a_claim("o-2", now=T0 + 2, max_orders=1))).refusal is None


async def test_a_confirm_keeps_the_reserved_time_and_takes_the_orders_product_and_value(store: Store) -> None:
    await store.reserve_account(a_claim("o-1"))
    order = replace(confirmed(a_claim("o-1", now=T0 + 5)), product="mobile.cmcc.100", value_cents=10_000)

    await store.confirm_account_order("shop-a", ACCOUNT, order)

    verdict = await store.reserve_account(a_claim("o-2", now=T0 + 6, max_orders=1))
    assert verdict.blocking == (replace(order, at=T0, expires_at=a_claim("o-1").entry.expires_at),)


async def test_a_confirm_of_a_dropped_reservation_records_the_order_again(store: Store) -> None:
    """A create slower than its lease, dropped as lapsed meanwhile, still counts once it confirms."""
    await store.reserve_account(a_claim("o-1", lease=1))
    assert await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.LAPSED, T0 + 1)

    await store.confirm_account_order("shop-a", ACCOUNT, confirmed(a_claim("o-1")))

    verdict = await store.reserve_account(a_claim("o-2", now=T0 + 2, max_orders=1))
    assert [(e.order_id, e.state) for e in verdict.blocking] == [("o-1", EntryState.CONFIRMED)]


async def test_abandoned_drops_only_a_pending_entry(store: Store) -> None:
    await store.reserve_account(a_claim("o-1"))
    kept = a_claim("o-2")
    await store.reserve_account(kept)
    await store.confirm_account_order("shop-a", ACCOUNT, confirmed(kept))

    assert await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.ABANDONED, T0 + 1)
    assert not await store.release_account_order("shop-a", ACCOUNT, "o-2", Release.ABANDONED, T0 + 1)
    assert not await store.release_account_order("shop-a", ACCOUNT, "o-9", Release.ABANDONED, T0 + 1)

    verdict = await store.reserve_account(a_claim("o-3", now=T0 + 2, max_orders=1))
    assert [e.order_id for e in verdict.blocking] == ["o-2"]


async def test_lapsed_drops_a_pending_entry_only_once_its_lease_is_over(store: Store) -> None:
    await store.reserve_account(a_claim("o-1", lease=30))

    assert not await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.LAPSED, T0 + 29)
    assert await store.release_account_order("shop-a", ACCOUNT, "o-1", Release.LAPSED, T0 + 30)

    assert (await store.reserve_account(a_claim("o-2", now=T0 + 31, max_orders=1))).refusal is None


async def test_expired_entries_are_forgotten(store: Store) -> None:
    await store.reserve_account(a_claim("o-1", window=60, expires_at=T0 + 60))

    verdict = await store.reserve_account(a_claim("o-2", now=T0 + 60, window=3_600, max_orders=1))

    assert verdict.refusal is None


async def test_account_records_survive_a_restart(durable_store_url: str) -> None:
    store = await open_store(durable_store_url)
    try:
        first = a_claim("o-1", window=60)
        await store.reserve_account(first)
        await store.confirm_account_order("shop-a", ACCOUNT, confirmed(first))
    finally:
        await store.close()

    reopened = await open_store(durable_store_url)
    try:
        verdict = await reopened.reserve_account(a_claim("o-2", now=T0 + 1, window=60))
        assert [(e.order_id, e.state) for e in verdict.blocking] == [("o-1", EntryState.CONFIRMED)]
    finally:
        await reopened.close()


# every interleaving: the backend against the rule in memory


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "confirm", "fail", "abandon", "lapse"]),
        st.integers(0, 5),  # which order id
        st.integers(0, 2),  # which product
        st.integers(1, 3),  # value, in tens of yuan
        st.integers(0, 40),  # seconds later
    ),
    min_size=1,
    max_size=25,
)
_examples = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, max_orders=st.one_of(st.none(), st.integers(1, 3)), window=st.sampled_from([None, 30.0]))
async def test_every_sequence_of_steps_matches_the_rule_and_never_exceeds_the_limit(
    store: Store, steps: list[tuple[str, int, int, int, int]], max_orders: int | None, window: float | None
) -> None:
    shop = f"shop-{next(_examples)}"  # a record of its own per example: nothing to clear in between
    book = AccountBook()
    now = T0
    for op, n, p, tens, later in steps:
        now += later
        order_id, product = f"o-{n}", f"mobile.p{p}"
        claim = a_claim(
            order_id,
            shop=shop,
            product=product,
            value_cents=tens * 1_000,
            now=now,
            window=window,
            max_orders=max_orders,
            max_value_cents=6_000,
            lease=20,
            day_start=T0 + (now - T0) // 200 * 200,  # short "days", so the day turns within an example
            expires_at=T0 + ((now - T0) // 200 + 1) * 200,
        )
        match op:
            case "reserve":
                got, expected = await store.reserve_account(claim), book.reserve(claim)
                assert got.refusal is expected.refusal
                assert sorted(got.blocking, key=lambda e: e.order_id) == sorted(
                    expected.blocking, key=lambda e: e.order_id
                )
            case "confirm":
                # Only what was reserved is ever created (and so confirmed), as it was reserved.
                held = book.entries(shop, ACCOUNT).get(order_id)
                if held is None or held.state is not EntryState.PENDING:
                    continue
                order = replace(held, state=EntryState.CONFIRMED, lease_until=0.0)
                await store.confirm_account_order(shop, ACCOUNT, order)
                book.confirm(shop, ACCOUNT, order)
            case _:
                how = {"fail": Release.FAILED, "abandon": Release.ABANDONED, "lapse": Release.LAPSED}[op]
                changed = await store.release_account_order(shop, ACCOUNT, order_id, how, now)
                assert changed is book.release(shop, ACCOUNT, order_id, how, now)
        counted = [e for e in book.entries(shop, ACCOUNT).values() if e.counts and e.at >= claim.day_start]
        if max_orders is not None:
            assert len(counted) <= max_orders
        assert sum(e.value_cents for e in counted) <= 6_000


# blocked accounts


def a_block(account: str = ACCOUNT, product: str = "*", **changes: object) -> AccountBlock:
    return replace(
        AccountBlock(account=account, product=product, created_at=T0, note="chargeback"), **changes
    )


async def test_blocks_are_kept_listed_and_read_per_account(store: Store) -> None:
    blocks = [
        a_block(),
        a_block(product="game.*", until=T0 + 60, operator="li"),
        a_block("13900139000", note='风控 "quoted"\nline'),
    ]
    for block in blocks:
        await store.block_account(block)

    assert await store.account_blocks(T0) == [blocks[0], blocks[1], blocks[2]]
    assert await store.account_blocks(T0, ACCOUNT) == [blocks[0], blocks[1]]
    assert await store.account_blocks(T0, "10001") == []


async def test_a_block_for_the_same_glob_replaces_the_earlier_one(store: Store) -> None:
    await store.block_account(a_block(note="first"))
    await store.block_account(a_block(note="second", until=T0 + 10))

    assert await store.account_blocks(T0) == [a_block(note="second", until=T0 + 10)]


async def test_expired_blocks_are_not_listed(store: Store) -> None:
    await store.block_account(a_block(until=T0 + 10))
    await store.block_account(a_block(product="game.*"))

    assert [b.product for b in await store.account_blocks(T0 + 10)] == ["game.*"]
    assert [b.product for b in await store.account_blocks(T0 + 10, ACCOUNT)] == ["game.*"]


async def test_unblocking_removes_every_block_of_the_account(store: Store) -> None:
    await store.block_account(a_block())
    await store.block_account(a_block(product="game.*"))
    await store.block_account(a_block("13900139000"))

    removed = await store.unblock_account(ACCOUNT)

    assert [b.product for b in removed] == ["*", "game.*"]
    assert [b.account for b in await store.account_blocks(T0)] == ["13900139000"]
    assert await store.unblock_account(ACCOUNT) == []


async def test_blocks_survive_a_restart(durable_store_url: str) -> None:
    store = await open_store(durable_store_url)
    try:
        await store.block_account(a_block(operator="li", until=T0 + 3_600.25))
    finally:
        await store.close()

    reopened = await open_store(durable_store_url)
    try:
        assert await reopened.account_blocks(T0, ACCOUNT) == [a_block(operator="li", until=T0 + 3_600.25)]
    finally:
        await reopened.close()


async def test_a_closed_store_refuses_the_account_operations(store: Store) -> None:
    await store.close()
    claim = a_claim("o-1")

    for operation in (
        lambda: store.reserve_account(claim),
        lambda: store.confirm_account_order("shop-a", ACCOUNT, claim.entry),
        lambda: store.release_account_order("shop-a", ACCOUNT, "o-1", Release.FAILED, T0),
        lambda: store.block_account(a_block()),
        lambda: store.unblock_account(ACCOUNT),
        lambda: store.account_blocks(T0),
    ):
        with pytest.raises(StoreError):
            await operation()
