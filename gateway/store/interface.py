"""What every store backend promises: durable orders, idempotent creation, safe concurrent saves.

Backends (memory, SQLite, Redis) implement this; nothing above the store knows which one runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from gateway.order import Order, OrderStatus, Reason
from gateway.store.blocks import AccountBlock
from gateway.store.reservations import AccountClaim, AccountEntry, AccountVerdict, Release


class StoreError(Exception):
    """The store could not do what was asked (unreachable, corrupt): mapped at the backend's boundary."""


class StaleOrder(StoreError):
    """A save was based on a version of the order that is no longer the stored one."""

    def __init__(self, uid: str, expected: int, found: int) -> None:
        super().__init__(f"order {uid}: saved from version {expected}, store has {found}")
        self.uid = uid


class PendingNonce(Protocol):
    """A nonce claimed and decided, whose record may still be on its way to the disk."""

    async def recorded(self) -> None:
        """Return once the claim is durable; `StoreError` if it could not be recorded."""
        ...


class RecordedNonce:
    """A pending claim that was durable from the start (a backend that records every claim at once)."""

    __slots__ = ()

    async def recorded(self) -> None:
        return None


RECORDED: Final = RecordedNonce()


class Store(Protocol):
    async def create_order(self, order: Order) -> tuple[Order, bool]:
        """Insert `order` unless (shop, order_id) exists; return the stored order and whether it is new.

        Atomic: of any number of concurrent creates for one key exactly one returns True.
        """
        ...

    async def save_order(self, order: Order) -> Order:
        """Store `order` if the stored version is `order.version`; return it with the version bumped.

        Raises `StaleOrder` otherwise. Durable when it returns.
        """
        ...

    async def get_order(self, shop: str, order_id: str) -> Order | None: ...

    async def get_order_by_uid(self, uid: str) -> Order | None: ...

    async def get_order_by_upstream_id(self, upstream_order_id: str) -> Order | None:
        """The order one of whose attempts carries `upstream_order_id` (a supplier's callback key)."""
        ...

    async def list_orders(
        self,
        *,
        status: OrderStatus | None = None,
        reason: Reason | None = None,
        limit: int = 100,
    ) -> Sequence[Order]:
        """Most recently updated first."""
        ...

    async def processing_orders(self, limit: int = 1000) -> Sequence[Order]:
        """Orders not yet final, least recently updated first (for recovery and reconciliation)."""
        ...

    async def count_processing(self) -> Mapping[Reason, int]:
        """How many orders are not yet final, by reason (reasons with none may be left out)."""
        ...

    async def orders_created(
        self,
        since: float,
        until: float,
        *,
        after: tuple[float, str] | None = None,
        limit: int = 1000,
    ) -> Sequence[Order]:
        """Orders whose `created_at` lies in [since, until), by (created_at, uid): up to `limit` past `after`.

        A page of a listing that can be read to its end (the figures of `/admin/stats`): the next
        page is asked for with the last order's (created_at, uid) as `after`. An order is listed by
        its creation time however often it is saved; saves during the reading never list it twice.
        """
        ...

    async def count_notifications_pending(self) -> int:
        """Orders whose shop notification is still to be sent: due, being sent, or waiting to retry."""
        ...

    async def due_notifications(self, now: float, limit: int = 100) -> Sequence[Order]:
        """Orders whose shop notification is due by `now`, soonest first: the outbox."""
        ...

    async def claim_checks(self, now: float, until: float, limit: int = 1000) -> Sequence[Order]:
        """Claim up to `limit` processing orders whose check time (`Order.check_time`) is due by `now`.

        Atomic per order: each due order is handed to one caller, whose claim moves its stored check
        time to `until` without changing the order or its version; the next save of the order sets
        the time anew. Returned as stored, roughly soonest due first. A backend that spreads orders
        over shards claims a share of `limit` in each, so it may hand out fewer than `limit` while
        more are due (the next call takes them), or up to a share per shard more.
        """
        ...

    async def claim_nonce(self, shop: str, nonce: str, expires_at: float, now: float) -> bool:
        """Remember `nonce` for `shop` until `expires_at`; False if it is remembered beyond `now`.

        Atomic: of concurrent claims of one nonce exactly one returns True. Durable when it returns
        True, as far as the backend keeps anything: a restarted gateway on the same store refuses the
        nonce until `expires_at` (a request is acted on only after its claim returned). Claims past
        their expiry are forgotten, so the record stays about one window of requests long.
        """
        ...

    async def claim_nonce_pending(
        self, shop: str, nonce: str, expires_at: float, now: float
    ) -> PendingNonce | None:
        """`claim_nonce` whose record may share the commit of the write that follows it.

        None if the nonce is remembered beyond `now`. Otherwise the claim is decided (atomic as for
        `claim_nonce`), and durable once `recorded()` returns: a request may be prepared meanwhile,
        but nothing it did may be answered for until then. A backend that commits in groups holds
        the record back for the next write (an order's creation), so the two share one sync.
        """
        ...

    async def reserve_account(self, claim: AccountClaim) -> AccountVerdict:
        """Check `claim` against its (shop, account) record and, if it passes, record its pending entry.

        Atomic per record: of concurrent claims on one account only as many pass as the rules allow
        (`reservations.decide`). Entries past their `expires_at` are forgotten first. Nothing is
        written when the verdict refuses.
        """
        ...

    async def confirm_account_order(self, shop: str, account: str, entry: AccountEntry) -> None:
        """The order of `entry` exists: its entry is confirmed (`reservations.confirmation`)."""
        ...

    async def release_account_order(
        self, shop: str, account: str, order_id: str, how: Release, now: float
    ) -> bool:
        """Release or drop the entry of `order_id` as `how` says (`reservations.release`).

        True if the entry changed.
        """
        ...

    async def block_account(self, block: AccountBlock) -> None:
        """Keep `block`, replacing the account's block for the same product glob. Durable when it returns."""
        ...

    async def unblock_account(self, account: str) -> Sequence[AccountBlock]:
        """Remove every block of `account`; the removed ones (expired ones too)."""
        ...

    async def account_blocks(self, now: float, account: str | None = None) -> Sequence[AccountBlock]:
        """The blocks active at `now`, of `account` or of every account, by account then product glob."""
        ...

    async def ping(self) -> None:
        """Raise `StoreError` unless the store answers."""
        ...

    async def close(self) -> None: ...
