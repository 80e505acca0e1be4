"""A simulated supplier's book of orders: what it was asked to charge and what became of it.

Owns the records and the questions tests ask of them; it decides nothing and speaks no protocol.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from gateway.simulator.faults import Fault

DEFAULT_MAX_SETTLED: Final = 10_000
"""Settled entries a ledger keeps: about 6 MB; hours of a demo, a minute or two of a soak at full speed,
far more than any test. Forgetting rarely matters to the gateway: "not found" counts as not executed
only for a submit whose answer it never saw, and it queries those from its next sweep on."""


class ChargeState(StrEnum):
    NOT_CHARGED = "not_charged"  # refused, or hung without charging: the supplier has no such order
    CHARGING = "charging"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in {ChargeState.SUCCEEDED, ChargeState.PARTIAL, ChargeState.FAILED}


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One upstream order id as the supplier saw it, as of the last change."""

    upstream_order_id: str
    account: str
    sku: str | None
    face_value_cents: int | None  # per unit; None when the protocol and catalogue do not tell
    quantity: int
    cost_cents: int | None
    supplier_order_id: str
    charged: bool
    state: ChargeState
    submissions: int = 1  # more than one: the id was reused and refused as a duplicate
    notify_url: str | None = None  # carried in the request, for protocols that do
    delivered_cents: int | None = None
    accepted_at: float  # monotonic
    finished_at: float | None = None  # wall clock: callbacks and queries report it
    callbacks_sent: int = 0  # HTTP attempts, retries included
    callbacks_acknowledged: int = 0
    faults: frozenset[Fault] = frozenset()  # drawn for this submit; none when it was not charged
    lagging_until: float | None = None  # monotonic: queries say "not found" before it
    forged_callbacks_sent: int = 0  # forged callbacks posted (each once, never retried)
    forged_callbacks_acknowledged: int = 0  # of those, how many the gateway acknowledged

    @property
    def settled(self) -> bool:
        """Whether nothing more happens to this order: never charged, or charged to a final state."""
        return not self.charged or self.state.final

    @property
    def delivers(self) -> bool:
        """Whether this entry puts value on the account: charged and not (yet) failed."""
        return self.charged and self.state is not ChargeState.FAILED

    def opposite(self) -> LedgerEntry:
        """This entry as a forger reports it: failed when it delivered (even partly), else delivered."""
        delivered = self.state in {ChargeState.SUCCEEDED, ChargeState.PARTIAL}
        return replace(
            self, state=ChargeState.FAILED if delivered else ChargeState.SUCCEEDED, delivered_cents=None
        )


class Ledger:
    """Entries by upstream order id, in the order they were first submitted.

    Keeps every entry still charging and the latest `max_settled` settled ones, forgetting the
    earliest settled first (as a supplier archives old orders), so a long demo stays bounded. A
    forgotten id is as if never submitted: queries do not find it and a resubmit is not refused as
    a duplicate. `forgotten` counts them: an audit of the whole run needs it to be 0.
    """

    __slots__ = ("_changed", "_entries", "_max_settled", "_settled", "forgotten")

    def __init__(self, max_settled: int = DEFAULT_MAX_SETTLED) -> None:
        if max_settled < 1:
            raise ValueError("a ledger keeps at least one settled entry")
        self._entries: dict[str, LedgerEntry] = {}
        self._settled: deque[str] = deque()  # ids of settled entries, earliest settled first
        self._max_settled = max_settled
        self._changed = asyncio.Event()
        self.forgotten = 0

    def get(self, upstream_order_id: str) -> LedgerEntry | None:
        return self._entries.get(upstream_order_id)

    def __getitem__(self, upstream_order_id: str) -> LedgerEntry:
        return self._entries[upstream_order_id]

    def __contains__(self, upstream_order_id: object) -> bool:
        return upstream_order_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[LedgerEntry]:
        """Everything submitted with a valid signature, refusals included."""
        return list(self._entries.values())

    def charges(self) -> list[LedgerEntry]:
        """Entries the supplier executed (whatever their result)."""
        return [entry for entry in self._entries.values() if entry.charged]

    def charges_for(self, account: str) -> list[LedgerEntry]:
        return [entry for entry in self._entries.values() if entry.charged and entry.account == account]

    def with_fault(self, fault: Fault) -> list[LedgerEntry]:
        """Entries for whose submit `fault` was drawn."""
        return [entry for entry in self._entries.values() if fault in entry.faults]

    def duplicates(self) -> list[LedgerEntry]:
        """Entries whose id was submitted more than once."""
        return [entry for entry in self._entries.values() if entry.submissions > 1]

    def charged_once(self, account: str) -> bool:
        """Exactly one charge on `account` that succeeded, partly succeeded or is still charging."""
        return sum(entry.delivers for entry in self.charges_for(account)) == 1

    def add(self, entry: LedgerEntry) -> LedgerEntry:
        if entry.upstream_order_id in self._entries:
            raise KeyError(f"{entry.upstream_order_id!r} is already in the ledger")
        self._entries[entry.upstream_order_id] = entry
        if entry.settled:
            self._settle(entry.upstream_order_id)
        self._notify()
        return entry

    def update(self, upstream_order_id: str, **changes: Any) -> LedgerEntry:
        """Change the entry of `upstream_order_id`; KeyError if there is none (or it was forgotten)."""
        before = self._entries[upstream_order_id]
        entry = replace(before, **changes)
        self._entries[upstream_order_id] = entry
        if entry.settled and not before.settled:
            self._settle(upstream_order_id)
        self._notify()
        return entry

    def _settle(self, upstream_order_id: str) -> None:
        settled = self._settled
        settled.append(upstream_order_id)
        while len(settled) > self._max_settled:
            oldest = settled.popleft()
            entry = self._entries.get(oldest)
            if entry is not None and entry.settled:  # else it is queued again when it settles again
                del self._entries[oldest]
                self.forgotten += 1

    async def wait_for(self, predicate: Callable[[Ledger], bool]) -> None:
        """Until `predicate(ledger)` holds; bound it with `asyncio.timeout`."""
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        # A fresh event per change: every waiter wakes once and re-checks its own predicate.
        self._changed.set()
        self._changed = asyncio.Event()
