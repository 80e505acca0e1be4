"""Per-account records behind the shop guards (CONTRACT.md §7): what a store keeps per (shop, account), the
question `Store.reserve_account` answers in one atomic step, and the rule that answers it.

Memory and SQLite apply `decide`, `confirmation` and `release` to a record inside one step of their own;
Redis applies the same rules in `redis_accounts.lua`, which must agree with this module. No I/O and no
clock here: every time is the caller's.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum


class EntryState(StrEnum):
    # Reserved by a request that has not (yet) created its order. It counts, so that of concurrent
    # requests only as many pass as the rules allow; past `lease_until` it is still counted until
    # someone looks the order up (`Release.LAPSED`), because a slow create may still land.
    PENDING = "pending"
    CONFIRMED = "confirmed"  # the order exists
    # The order ended failed: no longer counted, but kept until it expires so that a confirm
    # arriving late (the order failed within moments of its creation) cannot count it again.
    RELEASED = "released"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEntry:
    """One order (or a reservation for one) in its (shop, account) record."""

    order_id: str
    product: str
    value_cents: int  # face value × quantity: what value_per_day adds up
    at: float  # when it was reserved: the window and the day are measured from it
    expires_at: float  # after this no rule can need it (end of its window and of its day): forgotten
    state: EntryState = EntryState.PENDING
    lease_until: float = 0.0  # a pending entry's time to become an order

    @property
    def counts(self) -> bool:
        return self.state is not EntryState.RELEASED


class Refusal(StrEnum):
    DUPLICATE = "duplicate"
    ORDERS_PER_DAY = "orders_per_day"
    VALUE_PER_DAY = "value_per_day"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountClaim:
    """A new order's request to enter its account's record: the entry to add and the rules it must pass."""

    shop: str
    account: str
    entry: AccountEntry  # pending, `at` = now
    duplicate_since: (
        float | None
    )  # an entry of the same product reserved after this is a duplicate; None: no check
    day_start: float  # entries reserved since count for today's limits
    max_orders: int | None
    max_value_cents: int | None

    @property
    def now(self) -> float:
        return self.entry.at


@dataclass(frozen=True, slots=True)
class AccountVerdict:
    """`refusal` None: the entry was recorded. Otherwise nothing was, and `blocking` are the counted entries
    that made the rule refuse (the duplicates, or today's entries), newest first."""

    refusal: Refusal | None = None
    blocking: tuple[AccountEntry, ...] = ()


class Release(StrEnum):
    FAILED = "failed"  # the order ended failed: released for good, whatever the entry's state
    ABANDONED = "abandoned"  # no order was created under this reservation: dropped if still pending
    LAPSED = "lapsed"  # no order found and its lease is over: dropped if still pending and lapsed


def newest_first(entries: list[AccountEntry]) -> tuple[AccountEntry, ...]:
    return tuple(sorted(entries, key=lambda e: (e.at, e.order_id), reverse=True))


def decide(
    entries: Mapping[str, AccountEntry], claim: AccountClaim
) -> tuple[AccountVerdict, AccountEntry | None]:
    """The verdict on `claim` against its record's live `entries` (by order id), and the entry to write.

    An entry already held for the same order id (not released) is another request for this very order,
    a retry racing the first or one that never got as far as creating it: it passes without being
    counted twice, and a pending one's lease is extended.
    """
    new = claim.entry
    own = entries.get(new.order_id)
    if own is not None and own.counts:
        if own.state is EntryState.PENDING and own.lease_until < new.lease_until:
            return AccountVerdict(), replace(own, lease_until=new.lease_until)
        return AccountVerdict(), None
    counted = [e for e in entries.values() if e.counts and e.order_id != new.order_id]
    if claim.duplicate_since is not None:
        since = claim.duplicate_since
        earlier = [e for e in counted if e.product == new.product and e.at > since]
        if earlier:
            return AccountVerdict(Refusal.DUPLICATE, newest_first(earlier)), None
    today = [e for e in counted if e.at >= claim.day_start]
    if claim.max_orders is not None and len(today) + 1 > claim.max_orders:
        return AccountVerdict(Refusal.ORDERS_PER_DAY, newest_first(today)), None
    if (
        claim.max_value_cents is not None
        and sum(e.value_cents for e in today) + new.value_cents > claim.max_value_cents
    ):
        return AccountVerdict(Refusal.VALUE_PER_DAY, newest_first(today)), None
    return AccountVerdict(), new


def confirmation(existing: AccountEntry | None, entry: AccountEntry) -> AccountEntry | None:
    """What confirming `entry` (its order exists) writes over `existing`; None: nothing.

    The reservation's own time stays (the rules judged it at that time); product and value are the
    stored order's. A released entry stays released; a missing one (dropped as lapsed while its create
    was still on the way) is written anew.
    """
    if existing is not None and existing.state is EntryState.RELEASED:
        return None
    base = (
        entry if existing is None else replace(existing, product=entry.product, value_cents=entry.value_cents)
    )
    confirmed = replace(base, state=EntryState.CONFIRMED, lease_until=0.0)
    return None if confirmed == existing else confirmed


@dataclass(frozen=True, slots=True)
class Dropped:
    """`release` says: delete the entry."""


DROPPED = Dropped()


def release(existing: AccountEntry | None, how: Release, now: float) -> AccountEntry | Dropped | None:
    """What releasing `existing` writes: the released entry, `DROPPED` (delete it), or None (nothing)."""
    if existing is None:
        return None
    match how:
        case Release.FAILED:
            return (
                None
                if existing.state is EntryState.RELEASED
                else replace(existing, state=EntryState.RELEASED)
            )
        case Release.ABANDONED:
            return DROPPED if existing.state is EntryState.PENDING else None
        case Release.LAPSED:
            lapsed = existing.state is EntryState.PENDING and existing.lease_until <= now
            return DROPPED if lapsed else None


@dataclass(slots=True)
class AccountBook:
    """The records in process memory (the memory store's own); each call is one atomic step, never awaiting.

    Records are forgotten once their last entry expires: every write files the entry's expiry, and each
    reserve or release first drops the records whose filed expiries have passed.
    """

    _records: dict[tuple[str, str], dict[str, AccountEntry]] = field(default_factory=dict)
    _expiries: list[tuple[float, str, str]] = field(
        default_factory=list
    )  # min-heap (expires_at, shop, account)

    def reserve(self, claim: AccountClaim) -> AccountVerdict:
        record = self._live(claim.shop, claim.account, claim.now)
        verdict, write = decide(record, claim)
        if write is not None:
            self._write(claim.shop, claim.account, record, write)
        return verdict

    def confirm(self, shop: str, account: str, entry: AccountEntry) -> None:
        record = self._records.get((shop, account), {})
        write = confirmation(record.get(entry.order_id), entry)
        if write is not None:
            self._write(shop, account, record, write)

    def release(self, shop: str, account: str, order_id: str, how: Release, now: float) -> bool:
        record = self._live(shop, account, now)
        outcome = release(record.get(order_id), how, now)
        if isinstance(outcome, Dropped):
            del record[order_id]
        elif outcome is not None:
            self._write(shop, account, record, outcome)
        return outcome is not None

    def entries(self, shop: str, account: str) -> Mapping[str, AccountEntry]:
        return dict(self._records.get((shop, account), {}))

    def __len__(self) -> int:
        return len(self._records)

    def _live(self, shop: str, account: str, now: float) -> dict[str, AccountEntry]:
        self._purge(now)
        record = self._records.get((shop, account), {})
        for order_id in [o for o, e in record.items() if e.expires_at <= now]:
            del record[order_id]
        return record

    def _write(self, shop: str, account: str, record: dict[str, AccountEntry], entry: AccountEntry) -> None:
        record[entry.order_id] = entry
        self._records[(shop, account)] = record
        heapq.heappush(self._expiries, (entry.expires_at, shop, account))

    def _purge(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, shop, account = heapq.heappop(self._expiries)
            record = self._records.get((shop, account))
            if record is not None and all(e.expires_at <= now for e in record.values()):
                del self._records[(shop, account)]
