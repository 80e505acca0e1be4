"""The shop guards that need the store (CONTRACT.md §7): blocked accounts, the duplicate guard (防重复提交)
and the per-account daily limits. Asked by the shop API after idempotency and before routing; a refusal
leaves nothing recorded. It never creates orders: the order service does, between `reserve` and `settle`.

Duplicates and limits are judged on a record per (shop, account) in the store, whose one primitive
(`Store.reserve_account`) checks the rules and writes the new order's entry in one atomic step, so of
concurrent orders for one account only as many pass as the rules allow, on every backend and across
instances. The entry is written *before* the order exists and cannot be written with it (on a Redis
Cluster the order and the record live in different slots), so it is a reservation with a lease:

- reserved: `pending` until `lease_until` (`LEASE_SECONDS`, far beyond the moments between the check and
  the create). Pending entries count, so the reservation holds while the order is being created.
- `settle`, right after the order service answered: the order exists (`confirmed`), or nothing was
  created under this order id (the entry is dropped: the refusal leaves no trace).
- The order ends `failed` (supplier, operator): the order service's change listener releases the entry
  (`released`, kept until it expires so that a confirm arriving late cannot count it again).
- A crash or a lost store call between these steps leaves a pending entry, or a counted entry of a
  failed order. Counting it is the safe side (the account is refused rather than charged twice), and it
  never lasts: before refusing, the guard looks up every order that caused the refusal and releases
  those that failed, or that never came to exist once their lease is over, then asks again. A create
  slower than its lease whose entry was dropped meanwhile writes it back when it confirms.

Blocked accounts are a small table of the store too, read on every new order, so a block made through
any instance holds for all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from aiohttp import web

from gateway.accounts import mask_account
from gateway.clock import Clock
from gateway.config.model import ProductConfig, ShopConfig
from gateway.errors import AccountBlocked, AccountLimitExceeded, ApiError, DuplicateSuspected
from gateway.logs import get_logger
from gateway.money import format_money
from gateway.order import Order, OrderRequest, OrderStatus
from gateway.store import Store, StoreError
from gateway.store.reservations import (
    AccountClaim,
    AccountEntry,
    AccountVerdict,
    EntryState,
    Refusal,
    Release,
)
from gateway.views import iso_time

log = get_logger(__name__)

DAY_SECONDS: Final = 86_400.0
CHINA_OFFSET_SECONDS: Final = 8 * 3_600.0  # China time is UTC+8 all year round
LEASE_SECONDS: Final = 60.0
# Rounds of "refused, look the blocking orders up, release the stale ones, ask again": one is enough
# unless entries turn stale while we look.
SETTLE_ROUNDS: Final = 3
# Orders looked up per round, so a refusal costs a bounded number of reads however many entries a
# value limit adds up; pending entries (the likeliest to be stale) are looked at first.
MAX_LOOKUPS: Final = 32


def china_day_start(now: float) -> float:
    """The Unix time of the midnight, China time, that began the day `now` falls in."""
    return (now + CHINA_OFFSET_SECONDS) // DAY_SECONDS * DAY_SECONDS - CHINA_OFFSET_SECONDS


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `AccountGuard.reserve` recorded for an order about to be created."""

    shop: str
    account: str
    entry: AccountEntry


class AccountGuard:
    """Applies blocks, the duplicate guard and the limits to new orders; keeps the records in step."""

    def __init__(self, store: Store, clock: Clock, shops: Callable[[], Mapping[str, ShopConfig]]) -> None:
        """`shops` gives the shops' configuration as it is now (a reload replaces it)."""
        self._store = store
        self._clock = clock
        self._shops = shops
        self._tasks: set[asyncio.Task[None]] = set()

    async def check_blocked(self, account: str, product: str) -> None:
        """Raise `AccountBlocked` if an operator's block covers `account` for `product` now."""
        now = self._clock.now()
        blocks = [b for b in await self._store.account_blocks(now, account) if b.covers(product, now)]
        if not blocks:
            return
        ends = [b.until for b in blocks]
        until = None if None in ends else max(e for e in ends if e is not None)
        # The note is for operators: the shop learns only that, and until when.
        raise AccountBlocked(
            "this account is blocked" + ("" if until is None else f" until {iso_time(until)}"),
            details=[{"field": "account", "message": "is blocked"}],
        )

    async def reserve(
        self, shop: str, request: OrderRequest, product: ProductConfig, *, allow_duplicate: bool
    ) -> Reservation | None:
        """Reserve the order's place in its account's record, or raise the refusal; None if the shop has no
        duplicate window and no limits (nothing to reserve).

        With `allow_duplicate` the duplicate guard is skipped, but the order is still recorded: a later
        one for the same account within the window is a duplicate of it.
        """
        config = self._shops().get(shop)
        if config is None or not _guarded(config):
            return None
        claim = _claim(shop, request, product, config, self._clock.now(), allow_duplicate=allow_duplicate)
        for _ in range(SETTLE_ROUNDS):
            verdict = await self._store.reserve_account(claim)
            if verdict.refusal is None:
                return Reservation(shop, request.account, claim.entry)
            if not await self._release_stale(shop, request.account, verdict.blocking):
                break
        raise _refusal(verdict, claim)

    async def settle(self, reservation: Reservation | None, order: Order | None) -> None:
        """After placing: `order` is the one now stored under the reservation's order id, None if none is.

        Never raises for the store: the order's answer does not depend on it, and an entry left pending
        is set right by the next refusal that looks at it (see the module).
        """
        if reservation is None:
            return
        shop, account, entry = reservation.shop, reservation.account, reservation.entry
        try:
            if order is None or order.request.account != account:
                # Nothing was created under this reservation (another account's order holds the id).
                await self._store.release_account_order(
                    shop, account, entry.order_id, Release.ABANDONED, self._clock.now()
                )
            elif order.status is OrderStatus.FAILED:
                await self._store.release_account_order(
                    shop, account, entry.order_id, Release.FAILED, self._clock.now()
                )
            else:
                await self._store.confirm_account_order(shop, account, _confirmed(entry, order))
        except StoreError as exc:
            log.warning(
                "account_reservation_unsettled",
                shop=shop,
                order_id=entry.order_id,
                account=mask_account(account),
                error=str(exc),
            )

    def order_changed(self, before: Order | None, after: Order) -> None:
        """The order service's change listener: an order that has just failed frees its account."""
        if after.status is not OrderStatus.FAILED or (
            before is not None and before.status is OrderStatus.FAILED
        ):
            return
        config = self._shops().get(after.shop)
        if config is None or not _guarded(config):
            return
        task = asyncio.ensure_future(self._release_failed(after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Let releases under way finish; one cut off is set right by a later refusal's look-up."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)

    async def _release_failed(self, order: Order) -> None:
        try:
            await self._store.release_account_order(
                order.shop, order.request.account, order.order_id, Release.FAILED, self._clock.now()
            )
        except StoreError as exc:
            log.warning(
                "account_release_failed",
                shop=order.shop,
                order_id=order.order_id,
                account=mask_account(order.request.account),
                error=str(exc),
            )

    async def _release_stale(self, shop: str, account: str, blocking: Sequence[AccountEntry]) -> bool:
        """Release the entries among `blocking` whose orders failed or never came to be; True if any was."""
        now = self._clock.now()
        looked_at = sorted(blocking, key=lambda e: e.state is not EntryState.PENDING)[:MAX_LOOKUPS]
        orders = await asyncio.gather(*(self._store.get_order(shop, e.order_id) for e in looked_at))
        released = False
        for entry, order in zip(looked_at, orders, strict=True):
            how = _stale(entry, order, account, now)
            if how is not None and await self._store.release_account_order(
                shop, account, entry.order_id, how, now
            ):
                log.info(
                    "account_entry_released",
                    shop=shop,
                    order_id=entry.order_id,
                    account=mask_account(account),
                    why=how.value,
                )
                released = True
        return released


def _guarded(config: ShopConfig) -> bool:
    limits = config.account_limits
    limited = limits is not None and (limits.orders_per_day is not None or limits.value_per_day is not None)
    return config.duplicate_window > 0 or limited


def _claim(
    shop: str,
    request: OrderRequest,
    product: ProductConfig,
    config: ShopConfig,
    now: float,
    *,
    allow_duplicate: bool,
) -> AccountClaim:
    window = config.duplicate_window
    limits = config.account_limits
    day_start = china_day_start(now)
    max_orders = limits.orders_per_day if limits is not None else None
    max_value = limits.value_per_day if limits is not None else None
    # Kept for as long as a rule can need it: through its window, and through its day when limited.
    expires_at = now + window
    if max_orders is not None or max_value is not None:
        expires_at = max(expires_at, day_start + DAY_SECONDS)
    return AccountClaim(
        shop=shop,
        account=request.account,
        entry=AccountEntry(
            order_id=request.order_id,
            product=request.product,
            value_cents=product.face_value * request.quantity,
            at=now,
            expires_at=expires_at,
            lease_until=now + LEASE_SECONDS,
        ),
        duplicate_since=None if allow_duplicate or window <= 0 else now - window,
        day_start=day_start,
        max_orders=max_orders,
        max_value_cents=max_value,
    )


def _confirmed(entry: AccountEntry, order: Order) -> AccountEntry:
    """The reservation as its order was stored (the order's own product and value, if another request's)."""
    return replace(
        entry,
        product=order.request.product,
        value_cents=order.face_value_cents * order.request.quantity,
        state=EntryState.CONFIRMED,
        lease_until=0.0,
    )


def _stale(entry: AccountEntry, order: Order | None, account: str, now: float) -> Release | None:
    """How to release an entry given its order as stored (None: it rightly counts)."""
    if order is None:
        # Not created (yet): once the lease is over, it never will be by the request that reserved it.
        return Release.LAPSED if entry.state is EntryState.PENDING and entry.lease_until <= now else None
    if order.request.account != account:
        return Release.ABANDONED  # the order id went to another account's order
    if order.status is OrderStatus.FAILED:
        return Release.FAILED
    return None


def _refusal(verdict: AccountVerdict, claim: AccountClaim) -> ApiError:
    match verdict.refusal:
        case Refusal.DUPLICATE:
            earlier = verdict.blocking[0]
            seconds = max(0, round(claim.now - earlier.at))
            return DuplicateSuspected(
                f"order {earlier.order_id!r} for the same product and account was placed {seconds} s ago; "
                'if this is a second purchase, send it with "allow_duplicate": true',
                details=[{"field": "order_id", "message": earlier.order_id}],
            )
        case Refusal.ORDERS_PER_DAY:
            return AccountLimitExceeded(
                f"this account has reached the shop's limit of {claim.max_orders} orders today (China time)",
                details=[{"field": "account", "message": f"orders_per_day {claim.max_orders} reached"}],
            )
        case Refusal.VALUE_PER_DAY:
            limit = format_money(claim.max_value_cents or 0)
            return AccountLimitExceeded(
                f"this order would take the account over the shop's limit of {limit} in value today"
                " (China time)",
                details=[{"field": "account", "message": f"value_per_day {limit} would be exceeded"}],
            )
        case None:
            raise AssertionError("a verdict that passed is no refusal")


ACCOUNT_GUARD: Final = web.AppKey("account_guard", AccountGuard)
