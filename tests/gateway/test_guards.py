"""The account guard on its own (a memory store, a manual clock): China days, reservations and how they are
settled, confirmed, released and set right after a crash, and the refusals' wording."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.interface import AccountKind
from gateway.clock import ManualClock
from gateway.config.model import AccountLimitsConfig, OfferConfig, ProductConfig, ShopConfig
from gateway.errors import AccountBlocked, AccountLimitExceeded, DuplicateSuspected
from gateway.guards import LEASE_SECONDS, AccountGuard, Reservation, china_day_start
from gateway.order import OrderRequest, OrderStatus, Reason
from gateway.secret import Secret
from gateway.store.blocks import AccountBlock
from gateway.store.memory import MemoryStore
from gateway.store.reservations import AccountClaim, AccountEntry, EntryState, Release
from tests.store.samples import an_order

CHINA = timezone(timedelta(hours=8))
ACCOUNT = "13800138000"
PRODUCT = ProductConfig(
    account=AccountKind.MOBILE_CN,
    face_value=5_000,
    offers=(OfferConfig(supplier="fulu", sku="1", cost=4_930),),
)


def a_request(order_id: str, account: str = ACCOUNT, quantity: int = 1) -> OrderRequest:
    return OrderRequest(
        order_id=order_id, product="mobile.cmcc.50", account=account, quantity=quantity, notify_url=None
    )


def a_guard(
    store: MemoryStore, clock: ManualClock, **config: object
) -> tuple[AccountGuard, dict[str, ShopConfig]]:
    shops: dict[str, ShopConfig] = {"shop-a": ShopConfig(secret=Secret("s"), products=("*",), **config)}

    def current() -> Mapping[str, ShopConfig]:
        return shops

    return AccountGuard(store, clock, current), shops


async def counted(store: MemoryStore, clock: ManualClock, account: str = ACCOUNT) -> dict[str, EntryState]:
    """The account's entries that count, by order id: asked of the store with a claim no entry can pass."""
    peek = AccountClaim(
        shop="shop-a",
        account=account,
        entry=AccountEntry(
            order_id="peek", product="-", value_cents=0, at=clock.now(), expires_at=clock.now() + 1
        ),
        duplicate_since=None,
        day_start=0.0,
        max_orders=0,
        max_value_cents=None,
    )
    return {e.order_id: e.state for e in (await store.reserve_account(peek)).blocking}


@given(st.floats(0, 4e9))
def test_a_china_day_starts_at_midnight_in_beijing(now: float) -> None:
    start = china_day_start(now)

    assert start <= now < start + 86_400
    local = datetime.fromtimestamp(start, CHINA)
    assert (local.hour, local.minute, local.second) == (0, 0, 0)


def test_a_china_day_begins_at_16_utc() -> None:
    evening = datetime(2026, 11, 22, 15, 59, 59, tzinfo=UTC).timestamp()
    assert china_day_start(evening) == datetime(2026, 11, 21, 16, tzinfo=UTC).timestamp()
    assert china_day_start(evening + 1) == evening + 1


async def test_nothing_is_reserved_for_a_shop_without_guards() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, account_limits=AccountLimitsConfig())

    assert await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False) is None
    assert await guard.reserve("shop-x", a_request("o-1"), PRODUCT, allow_duplicate=False) is None
    await guard.settle(None, None)
    assert await counted(store, clock) == {}


async def test_a_created_order_confirms_its_reservation() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=60.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    assert await counted(store, clock) == {"o-1": EntryState.PENDING}

    await guard.settle(reservation, an_order(order_id="o-1", request=a_request("o-1")))

    assert await counted(store, clock) == {"o-1": EntryState.CONFIRMED}


async def test_nothing_created_drops_the_reservation() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=60.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)

    await guard.settle(reservation, None)

    assert await counted(store, clock) == {}


async def test_an_order_id_taken_by_another_accounts_order_drops_the_reservation() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=60.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)

    await guard.settle(reservation, an_order(order_id="o-1", request=a_request("o-1", account="13900139000")))

    assert await counted(store, clock) == {}


async def test_an_order_already_failed_when_settled_is_released() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=60.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    failed = an_order(order_id="o-1", request=a_request("o-1"), status=OrderStatus.FAILED, reason=None)

    await guard.settle(reservation, failed)

    assert await counted(store, clock) == {}
    assert await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=False) is not None


async def test_the_change_listener_releases_an_order_that_just_failed() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, account_limits=AccountLimitsConfig(orders_per_day=1))
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    order = an_order(order_id="o-1", request=a_request("o-1"))
    await guard.settle(reservation, order)
    failed = replace(order, status=OrderStatus.FAILED, reason=Reason.SUPPLIER_FAILED)

    guard.order_changed(order, replace(order, message="still going"))  # not a failure: nothing
    guard.order_changed(order, failed)
    guard.order_changed(failed, failed)  # already failed: nothing more
    await guard.close()

    assert await counted(store, clock) == {}


async def test_the_listener_leaves_shops_without_guards_alone() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, shops = a_guard(store, clock, duplicate_window=60.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    order = an_order(order_id="o-1", request=a_request("o-1"))
    await guard.settle(reservation, order)
    shops["shop-a"] = shops["shop-a"].model_copy(update={"duplicate_window": 0.0})  # reloaded without guards

    guard.order_changed(order, replace(order, status=OrderStatus.FAILED, reason=Reason.SUPPLIER_FAILED))
    await guard.close()

    assert await counted(store, clock) == {"o-1": EntryState.CONFIRMED}


async def test_a_failed_order_whose_release_was_lost_is_released_by_the_next_refusal() -> None:
    """The instance that failed the order died before releasing: the refusal looks and sets it right."""
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=600.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    order = an_order(order_id="o-1", request=a_request("o-1"), created_at=clock.now())
    await store.create_order(order)
    await guard.settle(reservation, order)
    await store.save_order(replace(order, status=OrderStatus.FAILED, reason=Reason.SUPPLIER_FAILED))

    assert await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=False) is not None
    assert await counted(store, clock) == {"o-2": EntryState.PENDING}


async def test_a_reservation_whose_create_never_came_holds_for_its_lease_then_lapses() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, account_limits=AccountLimitsConfig(orders_per_day=1))
    await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)  # then a crash

    clock.advance(LEASE_SECONDS - 1)
    with pytest.raises(AccountLimitExceeded):
        await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=False)
    clock.advance(1)

    assert await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=False) is not None
    assert await counted(store, clock) == {"o-2": EntryState.PENDING}


async def test_an_existing_order_keeps_counting_after_its_lease() -> None:
    """Its creator died before confirming: the order exists, so it counts, however long ago that was."""
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, account_limits=AccountLimitsConfig(orders_per_day=1))
    await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    await store.create_order(an_order(order_id="o-1", request=a_request("o-1")))

    clock.advance(LEASE_SECONDS * 10)

    with pytest.raises(AccountLimitExceeded):
        await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=False)
    assert await counted(store, clock) == {"o-1": EntryState.PENDING}


async def test_allow_duplicate_skips_the_guard_but_records_the_order() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=600.0)
    await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)

    assert await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=True) is not None
    clock.advance(1)
    with pytest.raises(DuplicateSuspected) as refused:
        await guard.reserve("shop-a", a_request("o-3"), PRODUCT, allow_duplicate=False)

    assert refused.value.details == [{"field": "order_id", "message": "o-2"}]  # the latest one
    assert "1 s ago" in refused.value.message


async def test_limit_refusals_say_which_limit() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, shops = a_guard(store, clock, account_limits=AccountLimitsConfig(value_per_day=12_050))
    await guard.reserve("shop-a", a_request("o-1", quantity=2), PRODUCT, allow_duplicate=False)

    with pytest.raises(AccountLimitExceeded) as by_value:
        await guard.reserve("shop-a", a_request("o-2", quantity=1), PRODUCT, allow_duplicate=False)
    shops["shop-a"] = shops["shop-a"].model_copy(
        update={"account_limits": AccountLimitsConfig(orders_per_day=1)}
    )
    with pytest.raises(AccountLimitExceeded) as by_count:
        await guard.reserve("shop-a", a_request("o-2"), PRODUCT, allow_duplicate=False)

    assert "120.50" in by_value.value.message
    assert by_value.value.details == [
        {"field": "account", "message": "value_per_day 120.50 would be exceeded"}
    ]
    assert "1 orders" in by_count.value.message


async def test_a_block_refuses_with_its_end_but_never_its_note() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock)
    now = clock.now()
    await store.block_account(
        AccountBlock(account=ACCOUNT, product="mobile.*", until=now + 60, note="fraud", created_at=now)
    )
    await store.block_account(AccountBlock(account=ACCOUNT, product="game.*", created_at=now))

    with pytest.raises(AccountBlocked) as refused:
        await guard.check_blocked(ACCOUNT, "mobile.cmcc.50")
    await guard.check_blocked(ACCOUNT, "qq.coins.10")
    await guard.check_blocked("13900139000", "mobile.cmcc.50")
    clock.advance(60)
    await guard.check_blocked(ACCOUNT, "mobile.cmcc.50")

    message = refused.value.message
    assert "until" in message
    assert "fraud" not in message
    with pytest.raises(AccountBlocked) as forever:
        await guard.check_blocked(ACCOUNT, "game.x")
    assert "until" not in forever.value.message


async def test_a_settle_the_store_refuses_does_not_fail_the_order() -> None:
    store, clock = MemoryStore(), ManualClock()
    guard, _ = a_guard(store, clock, duplicate_window=60.0)
    reservation = await guard.reserve("shop-a", a_request("o-1"), PRODUCT, allow_duplicate=False)
    assert isinstance(reservation, Reservation)
    await store.close()

    await guard.settle(reservation, an_order(order_id="o-1", request=a_request("o-1")))  # logged, not raised
    guard.order_changed(None, an_order(order_id="o-1", request=a_request("o-1"), status=OrderStatus.FAILED))
    await guard.close()


def test_release_kinds_are_the_scripts_words() -> None:
    assert [r.value for r in Release] == ["failed", "abandoned", "lapsed"]
