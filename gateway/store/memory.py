"""In-process store: orders, nonces, account records and blocks in dicts, gone when the process exits.

Relies on the event loop's single thread for atomicity, so it must never await mid-operation.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from gateway.order import Order, OrderStatus, Reason, order_uid_of
from gateway.store.blocks import AccountBlock, listed
from gateway.store.interface import RECORDED, PendingNonce, StaleOrder, StoreError
from gateway.store.nonces import NonceBook
from gateway.store.reservations import AccountBook, AccountClaim, AccountEntry, AccountVerdict, Release


def _recency(order: Order) -> tuple[float, str]:
    return (order.updated_at, order.uid)


def _creation(order: Order) -> tuple[float, str]:
    return (order.created_at, order.uid)


class MemoryStore:
    """The `Store` for tests, demos and single runs; keeps the frozen orders it is given, uncopied."""

    __slots__ = (
        "_accounts",
        "_blocks",
        "_by_key",
        "_by_uid",
        "_checks",
        "_closed",
        "_nonces",
        "_notify_due",
        "_processing",
    )

    def __init__(self) -> None:
        self._by_uid: dict[str, Order] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._processing: set[str] = set()
        self._notify_due: dict[str, float] = {}  # the outbox: uid -> when its notification is due
        self._checks: dict[str, float] = {}  # uid -> when the reconciler should look (or a claim ends)
        self._nonces = NonceBook()
        self._accounts = AccountBook()  # the shop guards' records per (shop, account)
        self._blocks: dict[str, dict[str, AccountBlock]] = {}  # account -> product glob -> block
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store is closed")

    async def create_order(self, order: Order) -> tuple[Order, bool]:
        self._check_open()
        key = (order.shop, order.order_id)
        existing = self._by_key.get(key)
        if existing is not None:
            return self._by_uid[existing], False
        if order.uid in self._by_uid:
            raise StoreError(f"order uid {order.uid} already belongs to another order")
        self._by_uid[order.uid] = order
        self._by_key[key] = order.uid
        if not order.status.final:
            self._processing.add(order.uid)
        self._track(order)
        return order, True

    async def save_order(self, order: Order) -> Order:
        self._check_open()
        stored = self._by_uid.get(order.uid)
        if stored is None:
            raise StoreError(f"order {order.uid} was never created")
        if stored.version != order.version:
            raise StaleOrder(order.uid, order.version, stored.version)
        saved = replace(order, version=order.version + 1)
        self._by_uid[order.uid] = saved
        if saved.status.final:
            self._processing.discard(order.uid)
        else:
            self._processing.add(order.uid)
        self._track(saved)
        return saved

    def _track(self, order: Order) -> None:
        due = order.notification.due_at if order.notification is not None else None
        if due is None:
            self._notify_due.pop(order.uid, None)
        else:
            self._notify_due[order.uid] = due
        if order.status.final:
            self._checks.pop(order.uid, None)
        else:
            self._checks[order.uid] = order.check_time

    async def get_order(self, shop: str, order_id: str) -> Order | None:
        self._check_open()
        uid = self._by_key.get((shop, order_id))
        return None if uid is None else self._by_uid[uid]

    async def get_order_by_uid(self, uid: str) -> Order | None:
        self._check_open()
        return self._by_uid.get(uid)

    async def get_order_by_upstream_id(self, upstream_order_id: str) -> Order | None:
        self._check_open()
        order = self._by_uid.get(order_uid_of(upstream_order_id))
        if order is None or all(a.upstream_order_id != upstream_order_id for a in order.attempts):
            return None
        return order

    async def list_orders(
        self,
        *,
        status: OrderStatus | None = None,
        reason: Reason | None = None,
        limit: int = 100,
    ) -> Sequence[Order]:
        self._check_open()
        matching = (
            o
            for o in self._by_uid.values()
            if (status is None or o.status is status) and (reason is None or o.reason is reason)
        )
        return heapq.nlargest(max(limit, 0), matching, key=_recency)

    async def processing_orders(self, limit: int = 1000) -> Sequence[Order]:
        self._check_open()
        waiting = (self._by_uid[uid] for uid in self._processing)
        return heapq.nsmallest(max(limit, 0), waiting, key=_recency)

    async def count_processing(self) -> Mapping[Reason, int]:
        self._check_open()
        return Counter(reason for uid in self._processing if (reason := self._by_uid[uid].reason) is not None)

    async def orders_created(
        self,
        since: float,
        until: float,
        *,
        after: tuple[float, str] | None = None,
        limit: int = 1000,
    ) -> Sequence[Order]:
        self._check_open()
        # A scan per page: this store holds a test's or a demo's orders, never a busy day's.
        start = (since, "") if after is None else after
        matching = (
            o for o in self._by_uid.values() if since <= o.created_at < until and _creation(o) > start
        )
        return heapq.nsmallest(max(limit, 0), matching, key=_creation)

    async def count_notifications_pending(self) -> int:
        self._check_open()
        return len(self._notify_due)

    async def due_notifications(self, now: float, limit: int = 100) -> Sequence[Order]:
        self._check_open()
        due = ((at, uid) for uid, at in self._notify_due.items() if at <= now)
        return [self._by_uid[uid] for _, uid in heapq.nsmallest(max(limit, 0), due)]

    async def claim_checks(self, now: float, until: float, limit: int = 1000) -> Sequence[Order]:
        self._check_open()
        due = heapq.nsmallest(max(limit, 0), ((at, uid) for uid, at in self._checks.items() if at <= now))
        for _, uid in due:
            self._checks[uid] = until
        return [self._by_uid[uid] for _, uid in due]

    async def claim_nonce(self, shop: str, nonce: str, expires_at: float, now: float) -> bool:
        self._check_open()
        return self._nonces.claim(shop, nonce, expires_at, now)

    async def claim_nonce_pending(
        self, shop: str, nonce: str, expires_at: float, now: float
    ) -> PendingNonce | None:
        # Every claim here is recorded as it is decided: there is nothing to wait for.
        return RECORDED if await self.claim_nonce(shop, nonce, expires_at, now) else None

    async def reserve_account(self, claim: AccountClaim) -> AccountVerdict:
        self._check_open()
        return self._accounts.reserve(claim)

    async def confirm_account_order(self, shop: str, account: str, entry: AccountEntry) -> None:
        self._check_open()
        self._accounts.confirm(shop, account, entry)

    async def release_account_order(
        self, shop: str, account: str, order_id: str, how: Release, now: float
    ) -> bool:
        self._check_open()
        return self._accounts.release(shop, account, order_id, how, now)

    async def block_account(self, block: AccountBlock) -> None:
        self._check_open()
        self._blocks.setdefault(block.account, {})[block.product] = block

    async def unblock_account(self, account: str) -> Sequence[AccountBlock]:
        self._check_open()
        return listed(list(self._blocks.pop(account, {}).values()))

    async def account_blocks(self, now: float, account: str | None = None) -> Sequence[AccountBlock]:
        self._check_open()
        if account is None:
            found = [b for blocks in self._blocks.values() for b in blocks.values()]
        else:
            found = list(self._blocks.get(account, {}).values())
        return listed([b for b in found if b.active(now)])

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
