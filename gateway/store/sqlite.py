"""SQLite store: one thread owns the connection and commits everything queued as one transaction.

The event loop never touches sqlite3 and never waits on a thread hop per statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from gateway.order import Order, OrderStatus, Reason, from_document, order_uid_of, to_document
from gateway.store.blocks import AccountBlock, listed
from gateway.store.interface import PendingNonce, StaleOrder, StoreError
from gateway.store.nonces import NonceBook
from gateway.store.reservations import (
    AccountClaim,
    AccountEntry,
    AccountVerdict,
    Dropped,
    EntryState,
    Release,
    confirmation,
    decide,
    release,
)

_T = TypeVar("_T")

BUSY_TIMEOUT_SECONDS: Final = 5.0
# Caps one transaction, so a flood of writes is still answered in steady slices.
MAX_BATCH: Final = 512
# How long a lazy write (a nonce's row) waits for a commit to join before it is committed alone:
# far longer than a request takes from its nonce to its order, and only a refused request waits it.
LAZY_HOLD_SECONDS: Final = 0.05
# Expired nonces deleted with each claim: above one, so a backlog (after a quiet spell) drains.
NONCE_PURGE_BATCH: Final = 8
# Expired account entries of any account deleted with each reserve or release, for the same reason.
ACCOUNT_PURGE_BATCH: Final = 8

_BY_UID: Final = "SELECT document FROM orders WHERE uid = ?"
_BY_KEY: Final = "SELECT document FROM orders WHERE shop = ? AND order_id = ?"

_Outcome = tuple["asyncio.Future[Any]", object, BaseException | None]


def sqlite_path(url: str) -> Path:
    """`sqlite:///rel/path` (from the working directory) or `sqlite:////abs/path` as a file path."""
    scheme, sep, rest = url.partition("://")
    path = rest[1:]
    if scheme != "sqlite" or not sep or not rest.startswith("/") or path in ("", "/"):
        raise ValueError(
            f"not a SQLite store URL: {url!r}; expected sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(path) if path.startswith("/") else Path.cwd() / path


@dataclass(frozen=True, slots=True)
class _Job:
    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    writes: bool
    # A write that does not start a commit of its own: it waits (at most LAZY_HOLD_SECONDS) to join
    # the next one. A nonce's record waits so for the order its request creates, sharing its fsync.
    lazy: bool = False


class _PendingClaim:
    """A nonce the book took, whose row joins the next commit; `recorded` asks for one if none came."""

    __slots__ = ("_expires_at", "_future", "_nonce", "_shop", "_store")

    def __init__(
        self, store: SqliteStore, shop: str, nonce: str, expires_at: float, future: asyncio.Future[bool]
    ) -> None:
        self._store = store
        self._shop = shop
        self._nonce = nonce
        self._expires_at = expires_at
        self._future = future

    async def recorded(self) -> None:
        try:
            if not self._future.done():
                await self._store._submit(_commit_held, writes=True)
            # False would mean the table already held the nonce live (a file shared with another
            # process): recorded either way, and the book, loaded from the table, decided.
            await asyncio.shield(self._future)
        except StoreError:
            self._store._nonces.release(self._shop, self._nonce, self._expires_at)
            raise


def _commit_held(db: sqlite3.Connection) -> None:
    """No work of its own: a write job, so the records held back are committed with it."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A held record whose request never asked for it (a refused request): its failure is the
    # next claim's concern, not an unhandled exception to log.
    if not future.cancelled():
        future.exception()


class SqliteStore:
    """The durable `Store` of a single instance: one SQLite file in WAL mode, written in group commits.

    Bound to the event loop that opened it.
    """

    __slots__ = (
        "_blocks",
        "_closed",
        "_committed_batches",
        "_lazy_hold",
        "_loop",
        "_nonces",
        "_path",
        "_queue",
        "_ready",
        "_stopped",
    )

    def __init__(
        self, path: Path, loop: asyncio.AbstractEventLoop, lazy_hold_seconds: float = LAZY_HOLD_SECONDS
    ) -> None:
        """Prepare what the loop and the store's thread share; `open` starts the thread."""
        self._path = path
        self._lazy_hold = lazy_hold_seconds
        self._loop = loop
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready: asyncio.Future[None] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._closed = False
        # The loop's fast path in front of the nonces table: see claim_nonce.
        self._nonces = NonceBook()
        # The table of blocked accounts, as this process (its only writer) wrote it: account ->
        # product glob -> block. Loaded at open; every order's check reads it without a trip.
        self._blocks: dict[str, dict[str, AccountBlock]] = {}
        # Written only by the store's thread.
        self._committed_batches = 0

    @classmethod
    async def open(cls, path: Path, *, lazy_hold_seconds: float = LAZY_HOLD_SECONDS) -> SqliteStore:
        """Open (creating if needed) the database at `path`; `StoreError` if it cannot be used.

        `lazy_hold_seconds`: how long a nonce's row may wait for a commit to join (tests stretch it).
        """
        store = cls(path, asyncio.get_running_loop(), lazy_hold_seconds)
        # A daemon, so a process that never closes the store can still exit; WAL keeps every commit.
        threading.Thread(target=store._serve, name=f"sqlite-store {path.name}", daemon=True).start()
        try:
            await asyncio.shield(store._ready)
        except asyncio.CancelledError:
            store._closed = True
            store._queue.put(None)
            raise
        # The book then knows every claim the table does, so it alone can decide a claim whose row
        # is written later (claim_nonce_pending). The table holds about one window of requests.
        for shop, nonce, expires_at in await store._submit(_nonce_rows, writes=False):
            store._nonces.claim(shop, nonce, expires_at, now=0.0)
        for block in await store._submit(_all_blocks, writes=False):
            store._blocks.setdefault(block.account, {})[block.product] = block
        return store

    @property
    def committed_batches(self) -> int:
        """Transactions committed so far; with the operation count, shows how well commits group."""
        return self._committed_batches

    async def create_order(self, order: Order) -> tuple[Order, bool]:
        return await self._submit(lambda db: _insert_order(db, order), writes=True)

    async def save_order(self, order: Order) -> Order:
        return await self._submit(lambda db: _update_order(db, order), writes=True)

    async def get_order(self, shop: str, order_id: str) -> Order | None:
        return await self._submit(lambda db: _one(db, _BY_KEY, (shop, order_id)), writes=False)

    async def get_order_by_uid(self, uid: str) -> Order | None:
        return await self._submit(lambda db: _one(db, _BY_UID, (uid,)), writes=False)

    async def get_order_by_upstream_id(self, upstream_order_id: str) -> Order | None:
        return await self._submit(lambda db: _by_upstream_id(db, upstream_order_id), writes=False)

    async def list_orders(
        self,
        *,
        status: OrderStatus | None = None,
        reason: Reason | None = None,
        limit: int = 100,
    ) -> Sequence[Order]:
        sql = _list_query(by_status=status is not None, by_reason=reason is not None)
        params = (*(f.value for f in (status, reason) if f is not None), max(limit, 0))
        return await self._submit(lambda db: _all(db, sql, params), writes=False)

    async def processing_orders(self, limit: int = 1000) -> Sequence[Order]:
        sql = "SELECT document FROM orders WHERE status = ? ORDER BY updated_at, uid LIMIT ?"
        params = (OrderStatus.PROCESSING.value, max(limit, 0))
        return await self._submit(lambda db: _all(db, sql, params), writes=False)

    async def count_processing(self) -> Mapping[Reason, int]:
        sql = "SELECT reason, count(*) FROM orders WHERE status = ? AND reason IS NOT NULL GROUP BY reason"

        def count(db: sqlite3.Connection) -> dict[Reason, int]:
            return {Reason(reason): n for reason, n in db.execute(sql, (OrderStatus.PROCESSING.value,))}

        return await self._submit(count, writes=False)

    async def orders_created(
        self,
        since: float,
        until: float,
        *,
        after: tuple[float, str] | None = None,
        limit: int = 1000,
    ) -> Sequence[Order]:
        # Keyset paging on the (created_at, uid) index: each page costs its own rows, never an offset.
        sql = (
            "SELECT document FROM orders WHERE created_at >= ? AND created_at < ?"
            " AND (created_at, uid) > (?, ?) ORDER BY created_at, uid LIMIT ?"
        )
        start = (since, "") if after is None else after
        params = (since, until, *start, max(limit, 0))
        return await self._submit(lambda db: _all(db, sql, params), writes=False)

    async def count_notifications_pending(self) -> int:
        sql = "SELECT count(*) FROM orders WHERE notify_due IS NOT NULL"  # the outbox's partial index

        def count(db: sqlite3.Connection) -> int:
            return int(db.execute(sql).fetchone()[0])

        return await self._submit(count, writes=False)

    async def due_notifications(self, now: float, limit: int = 100) -> Sequence[Order]:
        sql = "SELECT document FROM orders WHERE notify_due <= ? ORDER BY notify_due LIMIT ?"
        return await self._submit(lambda db: _all(db, sql, (now, max(limit, 0))), writes=False)

    async def claim_checks(self, now: float, until: float, limit: int = 1000) -> Sequence[Order]:
        sql = (
            "UPDATE orders SET check_at = ? WHERE uid IN"
            " (SELECT uid FROM orders WHERE check_at <= ? ORDER BY check_at LIMIT ?) RETURNING document"
        )
        return await self._submit(lambda db: _all(db, sql, (until, now, max(limit, 0))), writes=True)

    async def claim_nonce(self, shop: str, nonce: str, expires_at: float, now: float) -> bool:
        """Durable when it returns True: a restarted gateway still refuses the nonce until `expires_at`."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        # The book in memory answers a replay within this process without a trip to the disk and
        # settles concurrent claims of one nonce at once; the table remembers claims across restarts.
        if not self._nonces.claim(shop, nonce, expires_at, now):
            return False
        claimed = False
        try:
            # A write like any other: it joins the next group commit and shares its fsync.
            claimed = await self._submit(
                lambda db: _claim_nonce(db, shop, nonce, expires_at, now), writes=True
            )
        finally:
            if not claimed:
                # Seen before a restart (the table keeps it, until its own expiry), or not known to
                # be recorded, so the request is refused: the table decides the next claim either way.
                self._nonces.release(shop, nonce, expires_at)
        return claimed

    async def claim_nonce_pending(
        self, shop: str, nonce: str, expires_at: float, now: float
    ) -> PendingNonce | None:
        """The book decides at once; the row waits to join the commit of the write that follows.

        The book holds every live claim of the table (loaded at open), so its answer is the table's.
        """
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        if not self._nonces.claim(shop, nonce, expires_at, now):
            return None
        future: asyncio.Future[bool] = self._loop.create_future()
        future.add_done_callback(_retrieve)
        self._queue.put(
            _Job(lambda db: _claim_nonce(db, shop, nonce, expires_at, now), future, writes=True, lazy=True)
        )
        return _PendingClaim(self, shop, nonce, expires_at, future)

    async def reserve_account(self, claim: AccountClaim) -> AccountVerdict:
        """One job on the store's thread: the record is read, judged and written in one transaction."""
        return await self._submit(lambda db: _reserve_account(db, claim), writes=True)

    async def confirm_account_order(self, shop: str, account: str, entry: AccountEntry) -> None:
        await self._submit(lambda db: _confirm_account_order(db, shop, account, entry), writes=True)

    async def release_account_order(
        self, shop: str, account: str, order_id: str, how: Release, now: float
    ) -> bool:
        return await self._submit(
            lambda db: _release_account_order(db, shop, account, order_id, how, now), writes=True
        )

    async def block_account(self, block: AccountBlock) -> None:
        await self._submit(lambda db: _block_account(db, block), writes=True)
        # As the table now holds it: what had expired by then went with the write.
        kept = {
            account: {p: b for p, b in held.items() if b.active(block.created_at)}
            for account, held in self._blocks.items()
        }
        kept.setdefault(block.account, {})[block.product] = block
        self._blocks = {account: held for account, held in kept.items() if held}

    async def unblock_account(self, account: str) -> Sequence[AccountBlock]:
        removed = await self._submit(lambda db: _unblock_account(db, account), writes=True)
        self._blocks.pop(account, None)
        return removed

    async def account_blocks(self, now: float, account: str | None = None) -> Sequence[AccountBlock]:
        """From the copy in memory: every order asks, and only this process writes the table."""
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        held = self._blocks.values() if account is None else [self._blocks.get(account, {})]
        return listed([b for blocks in held for b in blocks.values() if b.active(now)])

    async def ping(self) -> None:
        await self._submit(lambda db: db.execute("SELECT 1").fetchone(), writes=False)

    async def close(self) -> None:
        """Finish everything already queued, then stop the thread and close the file."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        await asyncio.shield(self._stopped)

    async def _submit(self, work: Callable[[sqlite3.Connection], _T], *, writes: bool) -> _T:
        if self._closed:
            raise StoreError(f"SQLite store {self._path} is closed")
        future: asyncio.Future[_T] = self._loop.create_future()
        self._queue.put(_Job(work, future, writes))
        return await future

    # Everything below runs on the store's thread.

    def _serve(self) -> None:
        try:
            db = connect(self._path)
        except Exception as exc:  # noqa: BLE001 -- whatever stops the open is the opener's to see
            self._hand_back([(self._ready, None, _store_error(exc, f"cannot open {self._path}"))])
            return
        self._hand_back([(self._ready, None, None)])
        try:
            self._run_until_stopped(db)
        finally:
            db.close()
            self._hand_back([(self._stopped, None, None)])

    def _run_until_stopped(self, db: sqlite3.Connection) -> None:
        held: list[_Job] = []  # lazy writes waiting for a commit to join
        held_until = 0.0
        while True:
            batch: list[_Job] = []
            expired = False
            try:
                job = self._queue.get(timeout=max(0.0, held_until - time.monotonic()) if held else None)
            except queue.Empty:
                job, expired = None, True
            stopping = job is None and not expired
            while job is not None:
                if job.lazy:
                    if not held:
                        held_until = time.monotonic() + self._lazy_hold
                    held.append(job)
                else:
                    batch.append(job)
                if len(batch) + len(held) >= MAX_BATCH:
                    break
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                stopping = job is None
            if held and (
                expired
                or stopping
                or len(held) >= MAX_BATCH
                or any(j.writes for j in batch)
                or time.monotonic() >= held_until
            ):
                # Held records first: each went into the queue before anything its request wrote.
                batch, held = held + batch, []
            if batch:
                self._hand_back(self._run_batch(db, batch))
            if stopping:
                return

    def _run_batch(self, db: sqlite3.Connection, batch: list[_Job]) -> list[_Outcome]:
        try:
            # IMMEDIATE takes the write lock up front (waiting under busy_timeout) instead of
            # failing mid-batch when a read transaction cannot be upgraded.
            db.execute("BEGIN IMMEDIATE" if any(job.writes for job in batch) else "BEGIN")
            outcomes = [_run_job(db, job) for job in batch]
            db.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 -- the batch's callers get it; the thread must live on
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return [(job.future, None, _store_error(exc, "transaction failed")) for job in batch]
        self._committed_batches += 1
        return outcomes

    def _hand_back(self, outcomes: list[_Outcome]) -> None:
        # One wake-up of the loop per batch, not per operation.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left waiting
            self._loop.call_soon_threadsafe(_settle, outcomes)


def connect(path: Path) -> sqlite3.Connection:
    """The store's connection to the file at `path`: WAL, every commit synced, the schema in place.

    Only the store's thread uses it; public so tests can see how the store's connections are set up.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = resources.files("gateway.store").joinpath("sqlite.sql").read_text(encoding="utf-8")
    # isolation_level=None: each batch opens its own transaction, the driver must not open others.
    # timeout is SQLite's busy_timeout: how long to wait for another process's write lock.
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"journal mode is {mode!r}; the store needs WAL")
        # FULL syncs the WAL at every commit, so "durable when it returns" holds through an OS crash
        # or power loss too (NORMAL would lose the latest commits then: an attempt recorded just
        # before its submit left, a claimed nonce). Group commits share that one fsync per batch.
        db.execute("PRAGMA synchronous = FULL")
        _migrate(db)
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


def _run_job(db: sqlite3.Connection, job: _Job) -> _Outcome:
    # No savepoint per job: every job makes at most one write that matters (a nonce claim's purge of
    # expired rows before it is harmless either way), SQLite undoes a failed statement by itself, and
    # a job raises only when its write did not happen. So a failing job leaves no trace and the rest
    # of the batch commits, without two extra statements per job.
    try:
        result = job.work(db)
    except Exception as exc:  # the failure is its caller's alone
        if not db.in_transaction:
            # SQLite rolled back the whole transaction itself (disk full, I/O error): no job stands.
            raise
        return (job.future, None, _store_error(exc, "failed") if isinstance(exc, sqlite3.Error) else exc)
    return (job.future, result, None)


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # its caller was cancelled; the work itself may still have committed
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file made by an earlier version up to the schema before the schema script runs."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(orders)")}
    if columns and "notify_due" not in columns:
        db.execute("ALTER TABLE orders ADD COLUMN notify_due REAL")
    if columns and "check_at" not in columns:
        db.execute("ALTER TABLE orders ADD COLUMN check_at REAL")
        # Open orders of an earlier version are due now: the first sweep looks and reschedules them.
        db.execute("UPDATE orders SET check_at = 0 WHERE status = ?", (OrderStatus.PROCESSING.value,))
    if columns and "created_at" not in columns:
        db.execute("ALTER TABLE orders ADD COLUMN created_at REAL")
        # Read once from the stored documents, which have always carried it.
        db.execute("UPDATE orders SET created_at = json_extract(CAST(document AS TEXT), '$.created_at')")


def _notify_due(order: Order) -> float | None:
    return order.notification.due_at if order.notification is not None else None


def _check_at(order: Order) -> float | None:
    return None if order.status.final else order.check_time


def _store_error(exc: BaseException, doing: str) -> StoreError:
    error = StoreError(f"SQLite store: {doing}: {exc}")
    error.__cause__ = exc
    return error


def _insert_order(db: sqlite3.Connection, order: Order) -> tuple[Order, bool]:
    cursor = db.execute(
        "INSERT INTO orders"
        " (uid, shop, order_id, status, reason, updated_at, version, notify_due, check_at, created_at,"
        " document)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (shop, order_id) DO NOTHING",
        (
            order.uid,
            order.shop,
            order.order_id,
            order.status.value,
            order.reason.value if order.reason else None,
            order.updated_at,
            order.version,
            _notify_due(order),
            _check_at(order),
            order.created_at,
            orjson.dumps(to_document(order)),
        ),
    )
    if cursor.rowcount == 1:
        return order, True
    stored = _one(db, _BY_KEY, (order.shop, order.order_id))
    if stored is None:
        raise StoreError(f"order {order.shop}/{order.order_id} neither inserted nor found")
    return stored, False


def _update_order(db: sqlite3.Connection, order: Order) -> Order:
    saved = replace(order, version=order.version + 1)
    cursor = db.execute(
        "UPDATE orders SET status = ?, reason = ?, updated_at = ?, version = ?, notify_due = ?, check_at = ?,"
        " document = ? WHERE uid = ? AND version = ?",
        (
            saved.status.value,
            saved.reason.value if saved.reason else None,
            saved.updated_at,
            saved.version,
            _notify_due(saved),
            _check_at(saved),
            orjson.dumps(to_document(saved)),
            order.uid,
            order.version,
        ),
    )
    if cursor.rowcount == 1:
        return saved
    row = db.execute("SELECT version FROM orders WHERE uid = ?", (order.uid,)).fetchone()
    if row is None:
        raise StoreError(f"order {order.uid} was never created")
    raise StaleOrder(order.uid, order.version, row[0])


def _nonce_rows(db: sqlite3.Connection) -> list[tuple[str, str, float]]:
    return db.execute("SELECT shop, nonce, expires_at FROM nonces").fetchall()


def _claim_nonce(db: sqlite3.Connection, shop: str, nonce: str, expires_at: float, now: float) -> bool:
    # A few expired claims go with each new one, more than arrive, so the table stays about one
    # window of requests long without a sweeper. Before the insert: if the insert fails, the job
    # leaves only this delete of rows nobody can use behind (see _run_job).
    db.execute(
        "DELETE FROM nonces WHERE (shop, nonce) IN"
        " (SELECT shop, nonce FROM nonces WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
        (now, NONCE_PURGE_BATCH),
    )
    # A row whose time has passed is claimed anew; a live one means the nonce was seen.
    cursor = db.execute(
        "INSERT INTO nonces (shop, nonce, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (shop, nonce) DO UPDATE SET expires_at = excluded.expires_at"
        " WHERE nonces.expires_at <= ?",
        (shop, nonce, expires_at, now),
    )
    return cursor.rowcount == 1


_ENTRY_COLUMNS: Final = "order_id, product, value_cents, at, expires_at, state, lease_until"


def _entry(row: tuple[Any, ...]) -> AccountEntry:
    order_id, product, value_cents, at, expires_at, state, lease_until = row
    return AccountEntry(
        order_id=order_id,
        product=product,
        value_cents=value_cents,
        at=at,
        expires_at=expires_at,
        state=EntryState(state),
        lease_until=lease_until,
    )


def _account_entries(db: sqlite3.Connection, shop: str, account: str, now: float) -> dict[str, AccountEntry]:
    """The record's live entries; its expired ones, and a few of other records', are deleted first.

    The deletes come before the job's one write that matters: if that fails they leave nothing
    behind that anyone could use (see _run_job).
    """
    db.execute(
        "DELETE FROM account_orders WHERE (shop, account, order_id) IN (SELECT shop, account, order_id"
        " FROM account_orders WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
        (now, ACCOUNT_PURGE_BATCH),
    )
    db.execute(
        "DELETE FROM account_orders WHERE shop = ? AND account = ? AND expires_at <= ?", (shop, account, now)
    )
    rows = db.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM account_orders WHERE shop = ? AND account = ?",  # noqa: S608 (a constant)
        (shop, account),
    )
    return {row[0]: _entry(row) for row in rows}


def _write_entry(db: sqlite3.Connection, shop: str, account: str, entry: AccountEntry) -> None:
    db.execute(
        "INSERT OR REPLACE INTO account_orders"
        " (shop, account, order_id, product, value_cents, at, expires_at, state, lease_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            shop,
            account,
            entry.order_id,
            entry.product,
            entry.value_cents,
            entry.at,
            entry.expires_at,
            entry.state.value,
            entry.lease_until,
        ),
    )


def _reserve_account(db: sqlite3.Connection, claim: AccountClaim) -> AccountVerdict:
    verdict, write = decide(_account_entries(db, claim.shop, claim.account, claim.now), claim)
    if write is not None:
        _write_entry(db, claim.shop, claim.account, write)
    return verdict


def _confirm_account_order(db: sqlite3.Connection, shop: str, account: str, entry: AccountEntry) -> None:
    row = db.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM account_orders"  # noqa: S608 (a constant)
        " WHERE shop = ? AND account = ? AND order_id = ?",
        (shop, account, entry.order_id),
    ).fetchone()
    write = confirmation(None if row is None else _entry(row), entry)
    if write is not None:
        _write_entry(db, shop, account, write)


def _release_account_order(
    db: sqlite3.Connection, shop: str, account: str, order_id: str, how: Release, now: float
) -> bool:
    outcome = release(_account_entries(db, shop, account, now).get(order_id), how, now)
    if isinstance(outcome, Dropped):
        db.execute(
            "DELETE FROM account_orders WHERE shop = ? AND account = ? AND order_id = ?",
            (shop, account, order_id),
        )
    elif outcome is not None:
        _write_entry(db, shop, account, outcome)
    return outcome is not None


_BLOCK_COLUMNS: Final = "account, product, until, note, created_at, operator"


def _block(row: tuple[Any, ...]) -> AccountBlock:
    account, product, until, note, created_at, operator = row
    return AccountBlock(
        account=account, product=product, until=until, note=note, created_at=created_at, operator=operator
    )


def _block_account(db: sqlite3.Connection, block: AccountBlock) -> None:
    # Blocks whose time is over go with each new one: no rule reads them any more.
    db.execute("DELETE FROM blocked_accounts WHERE until <= ?", (block.created_at,))
    db.execute(
        f"INSERT OR REPLACE INTO blocked_accounts ({_BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
        (block.account, block.product, block.until, block.note, block.created_at, block.operator),
    )


def _unblock_account(db: sqlite3.Connection, account: str) -> list[AccountBlock]:
    rows = db.execute(
        f"DELETE FROM blocked_accounts WHERE account = ? RETURNING {_BLOCK_COLUMNS}",  # noqa: S608
        (account,),
    )
    return listed([_block(row) for row in rows])


def _all_blocks(db: sqlite3.Connection) -> list[AccountBlock]:
    return [_block(row) for row in db.execute(f"SELECT {_BLOCK_COLUMNS} FROM blocked_accounts")]  # noqa: S608


def _by_upstream_id(db: sqlite3.Connection, upstream_order_id: str) -> Order | None:
    order = _one(db, _BY_UID, (order_uid_of(upstream_order_id),))
    if order is None or all(a.upstream_order_id != upstream_order_id for a in order.attempts):
        return None
    return order


def _list_query(*, by_status: bool, by_reason: bool) -> str:
    if by_status and by_reason:
        return (
            "SELECT document FROM orders WHERE status = ? AND reason = ?"
            " ORDER BY updated_at DESC, uid DESC LIMIT ?"
        )
    if by_status:
        return "SELECT document FROM orders WHERE status = ? ORDER BY updated_at DESC, uid DESC LIMIT ?"
    if by_reason:
        return "SELECT document FROM orders WHERE reason = ? ORDER BY updated_at DESC, uid DESC LIMIT ?"
    return "SELECT document FROM orders ORDER BY updated_at DESC, uid DESC LIMIT ?"


def _one(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> Order | None:
    row = db.execute(sql, params).fetchone()
    return None if row is None else from_document(orjson.loads(row[0]))


def _all(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Order]:
    return [from_document(orjson.loads(row[0])) for row in db.execute(sql, params)]
