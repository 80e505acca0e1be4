"""Operator switches (disable / enable a supplier; room for more, such as hold): made through the admin
API, kept where the orders are, and applied on every instance that shares that store.

Owns the switch records, where a switch meets the file's value, and the watch that brings switches
made elsewhere; it decides nothing about orders and reaches what it switches only through a `Lever`.

Where a switch applies, and against the file (`suppliers.<name>.disabled`):

- Made here (`Switchboard.flip`): kept first, then applied here at once. If the store cannot keep it,
  `StoreError` (503 `store_unavailable`) and nothing changes, here or anywhere.
- Made on another instance: applied here at the next read of the store, whatever this file says: it
  is the newest word there is.
- A reload that changes a supplier's `disabled:` applies the file's value on the instance reloaded (the
  file changed it: there, that is the newest word); a reload that leaves it alone keeps the switch.
  The stored switch stays as it was: every instance follows its own file and its own reloads.
- At start, and when a reload adds a supplier a stored switch names: the stored switch applies unless
  the file's value differs from the one the switch was made against (its `base`): then the file was
  changed since, and wins, as it would have at a reload. So a restart keeps what the instance had
  before it, save where a file was changed and changed back (that counts as unchanged).
- A switch that disappears from the store (a flushed or unpersisted Redis) changes nothing: each
  instance keeps what it has until the next switch is made.

How switches made elsewhere arrive: every `WATCH_SECONDS` each instance reads the one small hash that
holds them all (`redisswitches`), rather than subscribing to pub/sub. Pub/sub loses what is published
while an instance is disconnected (a restart, a blip, a failover), so it would need this periodic read
anyway to resync; on a Cluster it would also need a connection of its own per node. The read is both
delivery and resync: one command a second per instance, the same on a server and a Cluster, and the
first read after an outage brings the instance up to date. A second is fast enough for an operator's
click; orders never wait for it. While the store cannot be read, the last known switches stay.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import orjson

from gateway.clock import Clock
from gateway.logs import get_logger
from gateway.store import StoreError
from gateway.suppliers import Supplier

log = get_logger(__name__)

WATCH_SECONDS: Final = 1.0
TOKEN_BYTES: Final = 4


class SwitchKind(StrEnum):
    """What a switch moves; its subject says which one."""

    DISABLED = "disabled"  # subject: a supplier's name; on: disabled


@dataclass(frozen=True, slots=True)
class Switch:
    """One operator switch as stored: `{"on", "base", "at", "by"?, "token"}` under `<kind>:<subject>`."""

    kind: SwitchKind
    subject: str
    on: bool
    base: bool  # the configuration's value where it was made: a file changed since wins at start
    at: float  # when it was made (Unix seconds, on the instance that made it)
    by: str | None  # the operator, when the request named one (X-Operator)
    # Sets two switches with equal fields apart, so each switch made is met once on every instance.
    token: str

    @property
    def name(self) -> str:
        return switch_name(self.kind, self.subject)

    def encode(self) -> bytes:
        doc: dict[str, object] = {"on": self.on, "base": self.base, "at": self.at, "token": self.token}
        if self.by is not None:
            doc["by"] = self.by
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, name: str, record: bytes) -> Switch:
        """The switch stored under `name`; `ValueError` if this gateway cannot read it."""
        kind, colon, subject = name.partition(":")
        if not colon:
            raise ValueError("not named <kind>:<subject>")
        known = SwitchKind(kind)  # ValueError for a kind this gateway has no lever for
        doc = orjson.loads(record)  # orjson.JSONDecodeError is a ValueError
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        on, base, at, by, token = (doc.get(key) for key in ("on", "base", "at", "by", "token"))
        if not (
            isinstance(on, bool)
            and isinstance(base, bool)
            and isinstance(at, int | float)
            and isinstance(token, str)
            and (by is None or isinstance(by, str))
        ):
            raise ValueError("fields missing or of the wrong type")
        return cls(known, subject, on, base, float(at), by, token)


def switch_name(kind: SwitchKind, subject: str) -> str:
    """The name a switch is stored under: its kind never holds a colon, so the subject may."""
    return f"{kind.value}:{subject}"


class SwitchState(Protocol):
    """Where switch records are kept, by name. Raises `StoreError` when the store cannot be reached;
    a `put` that raised may still have been kept (its reply lost)."""

    @property
    def shared(self) -> bool:
        """Whether other instances see these records: only then is there anything to watch."""
        ...

    async def put(self, name: str, record: bytes) -> None: ...

    async def records(self) -> Mapping[str, bytes]: ...


class ProcessSwitches:
    """Switches of this process alone, for the memory and SQLite stores: no other instance shares them."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    @property
    def shared(self) -> bool:
        return False

    async def put(self, name: str, record: bytes) -> None:
        self._records[name] = record

    async def records(self) -> Mapping[str, bytes]:
        return dict(self._records)


class Lever(Protocol):
    """What one kind of switch moves on this instance."""

    def configured(self, subject: str) -> bool | None:
        """The configuration's value for `subject`, or None if this instance has no such subject."""
        ...

    def apply(self, subject: str, on: bool) -> None: ...


class SupplierDisabled:
    """`disabled` of the suppliers, through the mapping a reload updates in place."""

    __slots__ = ("_suppliers",)

    def __init__(self, suppliers: Mapping[str, Supplier]) -> None:
        self._suppliers = suppliers

    def configured(self, subject: str) -> bool | None:
        supplier = self._suppliers.get(subject)
        return None if supplier is None else supplier.config.disabled

    def apply(self, subject: str, on: bool) -> None:
        self._suppliers[subject].set_disabled(on)


class Switchboard:
    """Makes operator switches and applies those made elsewhere, by the rules in the module's docstring."""

    __slots__ = ("_clock", "_flips", "_levers", "_readable", "_seen", "_state", "_waiting", "_watch_seconds")

    def __init__(
        self,
        state: SwitchState,
        levers: Mapping[SwitchKind, Lever],
        clock: Clock,
        *,
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        missing = set(SwitchKind) - set(levers)
        if missing:
            raise ValueError(f"no lever for switch kind(s) {', '.join(sorted(missing))}")
        self._state = state
        self._levers = levers
        self._clock = clock
        self._watch_seconds = watch_seconds
        # The record each name was last acted on from: a read skips what it has met already.
        self._seen: dict[str, bytes] = {}
        # Stored switches for subjects this instance lacks (yet): met as stored ones once a reload adds them.
        self._waiting: dict[str, bytes] = {}
        # Switches made here: a read begun before one of them may not show it, and must not undo it.
        self._flips = 0
        self._readable = True

    @property
    def shared(self) -> bool:
        return self._state.shared

    async def flip(self, kind: SwitchKind, subject: str, on: bool, *, by: str | None = None) -> Switch:
        """Keep the switch in the store, then apply it here; `StoreError` (nothing applied) if not kept.

        `KeyError` if this instance has no such subject (the caller checks first, for its 404).
        """
        lever = self._levers[kind]
        base = lever.configured(subject)
        if base is None:
            raise KeyError(subject)
        switch = Switch(
            kind, subject, on, base, round(self._clock.now(), 3), by, secrets.token_hex(TOKEN_BYTES)
        )
        record = switch.encode()
        await self._state.put(switch.name, record)
        self._flips += 1
        self._seen[switch.name] = record
        lever.apply(subject, on)
        log.info("operator_switch_made", kind=kind.value, subject=subject, on=on, by=by, at=switch.at)
        return switch

    async def load(self) -> None:
        """Meet the stored switches at start: each applies unless the file changed since it was made."""
        self._meet(await self._state.records(), stored=True)

    async def refresh(self) -> None:
        """Read the stored switches once and apply those made elsewhere since the last read."""
        flips = self._flips
        records = await self._state.records()
        if flips != self._flips:
            return  # what was read may predate a switch made here meanwhile: the next read decides
        self._meet(records, stored=False)

    async def watch(self) -> None:
        """Refresh every `watch_seconds` until cancelled; returns at once where no other instance shares."""
        if not self._state.shared:
            return
        while True:
            await asyncio.sleep(self._watch_seconds)
            try:
                await self.refresh()
            except StoreError as exc:
                # Once per outage: the last known switches stay until the store answers again.
                if self._readable:
                    log.warning("operator_switches_unreadable", error=str(exc))
                self._readable = False
                continue
            if not self._readable:
                log.info("operator_switches_readable_again")
            self._readable = True

    def _meet(self, records: Mapping[str, bytes], *, stored: bool) -> None:
        for name, record in records.items():
            if self._seen.get(name) == record:
                continue
            try:
                switch = Switch.decode(name, record)
            except ValueError as exc:
                self._seen[name] = record  # said once; a new record under the name is read again
                log.warning("operator_switch_unreadable", name=name, error=str(exc))
                continue
            lever = self._levers[switch.kind]
            configured = lever.configured(switch.subject)
            if configured is None:
                self._waiting[name] = record
                continue
            # Made before this instance had the subject (at start, or before a reload added it)?
            earlier = stored or self._waiting.pop(name, None) == record
            self._seen[name] = record
            fields = {"kind": switch.kind.value, "subject": switch.subject, "on": switch.on, "by": switch.by}
            if earlier and configured != switch.base:
                log.info("operator_switch_overruled_by_file", **fields, configured=configured, at=switch.at)
                continue
            lever.apply(switch.subject, switch.on)
            log.info("operator_switch_applied", **fields, at=switch.at)
