"""What only the SQLite store promises: durability across restarts, group commit, a free event loop."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.order import OrderStatus, Reason
from gateway.store import StaleOrder, StoreError, open_store
from gateway.store.blocks import AccountBlock
from gateway.store.sqlite import NONCE_PURGE_BATCH, SqliteStore, connect, sqlite_path
from tests.store.samples import T0, a_full_order, an_order


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "orders.db"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(path)
    yield opened
    await opened.close()


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock until the block ends."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("COMMIT")


def count_rows(path: Path, table: str) -> int:
    with closing(sqlite3.connect(path)) as db:
        (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 -- fixed names
    return int(count)


async def test_orders_survive_close_and_reopen(path: Path) -> None:
    store = await SqliteStore.open(path)
    order, _ = await store.create_order(a_full_order())
    saved = await store.save_order(replace(order, status=OrderStatus.SUCCEEDED, reason=None))
    await store.close()

    reopened = await SqliteStore.open(path)
    try:
        assert await reopened.get_order_by_uid(order.uid) == saved
        assert await reopened.get_order(order.shop, order.order_id) == saved
        with pytest.raises(StaleOrder):
            await reopened.save_order(order)
    finally:
        await reopened.close()


KILLED_WRITER = """
import asyncio, os, signal, sys
from dataclasses import replace
from pathlib import Path
from gateway.store.sqlite import SqliteStore
from tests.store.samples import an_order

async def main():
    store = await SqliteStore.open(Path(sys.argv[1]))
    order, _ = await store.create_order(an_order("GW1"))
    await store.save_order(replace(order, message="saved before the kill"))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_a_save_that_returned_survives_kill_9(path: Path) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_WRITER,
        str(path),
        cwd=Path(__file__).parents[2],
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await writer.communicate()
    assert writer.returncode == -signal.SIGKILL, stderr.decode()

    store = await SqliteStore.open(path)
    try:
        order = await store.get_order_by_uid("GW1")
    finally:
        await store.close()
    assert order is not None
    assert (order.message, order.version) == ("saved before the kill", 1)


async def test_the_file_is_in_wal_mode(store: SqliteStore, path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_every_commit_is_synced_to_disk(store: SqliteStore, path: Path) -> None:
    # synchronous is a setting of each connection, not of the file: ask one made as the store makes its own.
    # FULL (2), not NORMAL (1): under WAL, NORMAL leaves the latest commits to an OS crash or power loss.
    with closing(connect(path)) as db:
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)


async def test_concurrent_saves_share_transactions(store: SqliteStore) -> None:
    created = await asyncio.gather(*(store.create_order(an_order(f"GW{i:04d}")) for i in range(1000)))
    before = store.committed_batches

    saved = await asyncio.gather(*(store.save_order(replace(o, message="sent")) for o, _ in created))

    assert all(s.version == 1 for s in saved)
    batches = store.committed_batches - before
    assert 1 <= batches < len(saved) // 10


async def test_a_failing_operation_fails_alone_in_its_batch(store: SqliteStore, path: Path) -> None:
    stale, _ = await store.create_order(an_order("GW1"))
    await store.save_order(stale)
    fresh, _ = await store.create_order(an_order("GW2"))
    before = store.committed_batches

    with write_lock(path):
        # The store's thread now waits for the lock with its first job, so the rest queue up behind it.
        first = asyncio.ensure_future(store.get_order_by_uid("GW2"))
        await asyncio.sleep(0.02)
        rest = asyncio.gather(
            store.save_order(replace(stale, message="lost")),
            store.save_order(replace(fresh, message="kept")),
            store.create_order(an_order("GW1", order_id="o-uid-reused")),
            store.create_order(an_order("GW3")),
            return_exceptions=True,
        )
        await asyncio.sleep(0)
    results = await rest

    assert await first == fresh
    assert isinstance(results[0], StaleOrder)
    assert results[1] == replace(fresh, message="kept", version=1)
    assert isinstance(results[2], StoreError)
    assert isinstance(results[2].__cause__, sqlite3.IntegrityError)
    assert results[3] == (an_order("GW3"), True)
    assert store.committed_batches - before <= 2
    await store.close()
    assert count_rows(path, "orders") == 3


async def test_the_loop_runs_while_500_creates_wait_for_the_disk(store: SqliteStore, path: Path) -> None:
    with write_lock(path):
        creates = asyncio.gather(*(store.create_order(an_order(f"GW{i:04d}")) for i in range(500)))
        ticks = 0
        while ticks < 1000:
            ticks += 1
            await asyncio.sleep(0)
        # A store that blocked the loop would only get here after busy_timeout, with the creates failed.
        assert not creates.done()
    results = await creates

    assert [created for _, created in results] == [True] * 500


async def test_close_finishes_queued_work_first(path: Path) -> None:
    store = await SqliteStore.open(path)
    pending = [asyncio.ensure_future(store.create_order(an_order(f"GW{i:02d}"))) for i in range(50)]
    await asyncio.sleep(0)

    await store.close()

    assert all(task.result()[1] for task in pending)
    assert count_rows(path, "orders") == 50


async def test_indexed_columns_follow_the_document(store: SqliteStore, path: Path) -> None:
    order, _ = await store.create_order(an_order("GW1", updated_at=T0))
    await store.save_order(
        replace(order, status=OrderStatus.FAILED, reason=Reason.SUPPLIER_FAILED, updated_at=T0 + 1)
    )

    with closing(sqlite3.connect(path)) as db:
        row = db.execute(
            "SELECT uid, shop, order_id, status, reason, updated_at, version FROM orders"
        ).fetchone()
    assert row == ("GW1", "shop-a", "o-GW1", "failed", "supplier_failed", T0 + 1, 1)


async def test_open_creates_missing_directories(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "var" / "lib" / "orders.db")
    await store.ping()
    await store.close()

    assert (tmp_path / "var" / "lib" / "orders.db").is_file()


@pytest.mark.parametrize("kind", ["parent_is_a_file", "path_is_a_directory", "corrupt_file"])
async def test_an_unusable_path_fails_to_open_with_store_error(tmp_path: Path, kind: str) -> None:
    match kind:
        case "parent_is_a_file":
            (tmp_path / "taken").write_text("not a directory")
            path = tmp_path / "taken" / "orders.db"
        case "path_is_a_directory":
            path = tmp_path / "orders.db"
            path.mkdir()
        case _:
            path = tmp_path / "orders.db"
            path.write_bytes(b"this is not a SQLite database\n" * 200)

    with pytest.raises(StoreError):
        await SqliteStore.open(path)


async def test_an_unwritable_location_fails_to_open_with_store_error() -> None:
    # procfs refuses new files even to root, so this holds whoever runs the tests.
    with pytest.raises(StoreError):
        await SqliteStore.open(Path("/proc/self/gateway-test/orders.db"))


async def test_open_store_reads_paths_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    store = await open_store("sqlite:///var/gateway.db")
    await store.close()

    assert isinstance(store, SqliteStore)
    assert (tmp_path / "var" / "gateway.db").is_file()


def test_sqlite_path_reads_relative_and_absolute_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert sqlite_path("sqlite:///var/gateway.db") == tmp_path / "var" / "gateway.db"
    assert sqlite_path("sqlite:////srv/gateway/orders.db") == Path("/srv/gateway/orders.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:////", "sqlite:/x.db", "memory:///x.db"])
def test_sqlite_path_refuses_urls_without_a_file(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///relative/path"):
        sqlite_path(url)


async def test_a_file_from_before_the_outbox_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE orders (uid TEXT PRIMARY KEY, shop TEXT NOT NULL, order_id TEXT NOT NULL,"
            " status TEXT NOT NULL, reason TEXT, updated_at REAL NOT NULL, version INTEGER NOT NULL,"
            " document BLOB NOT NULL, UNIQUE (shop, order_id))"
        )
    store = await SqliteStore.open(path)
    try:
        order, created = await store.create_order(a_full_order())
        assert created
        assert [o.uid for o in await store.due_notifications(T0 + 1000)] == [order.uid]
    finally:
        await store.close()


# nonces


KILLED_CLAIMER = """
import asyncio, os, signal, sys
from pathlib import Path
from gateway.store.sqlite import SqliteStore

async def main():
    store = await SqliteStore.open(Path(sys.argv[1]))
    assert await store.claim_nonce("shop-a", "claimed-before-the-kill", 2e9 + 300, 2e9)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_a_claim_that_returned_survives_kill_9(path: Path) -> None:
    claimer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_CLAIMER,
        str(path),
        cwd=Path(__file__).parents[2],
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await claimer.communicate()
    assert claimer.returncode == -signal.SIGKILL, stderr.decode()

    store = await SqliteStore.open(path)
    try:
        assert not await store.claim_nonce("shop-a", "claimed-before-the-kill", 2e9 + 301, 2e9 + 1)
    finally:
        await store.close()


async def test_nonce_claims_share_transactions(store: SqliteStore, path: Path) -> None:
    before = store.committed_batches

    claims = await asyncio.gather(
        *(store.claim_nonce("shop-a", f"n{i:04d}", T0 + 300, T0) for i in range(500))
    )

    assert all(claims)
    assert 1 <= store.committed_batches - before < len(claims) // 10
    assert count_rows(path, "nonces") == 500


async def test_a_replay_within_the_process_is_refused_without_a_trip_to_the_disk(store: SqliteStore) -> None:
    assert await store.claim_nonce("shop-a", "n1", T0 + 300, T0)
    before = store.committed_batches

    assert not await store.claim_nonce("shop-a", "n1", T0 + 301, T0 + 1)

    assert store.committed_batches == before


async def test_expired_nonces_leave_the_table_as_new_claims_come(store: SqliteStore, path: Path) -> None:
    for i in range(100):
        await store.claim_nonce("shop-a", f"old-{i:03d}", T0 + 300, T0)
    later = 10
    for i in range(later):
        await store.claim_nonce("shop-a", f"new-{i:03d}", T0 + 700, T0 + 400)

    assert count_rows(path, "nonces") == later + max(0, 100 - later * NONCE_PURGE_BATCH)
    for i in range(20):
        await store.claim_nonce("shop-a", f"newer-{i:03d}", T0 + 700, T0 + 400)
    assert count_rows(path, "nonces") == later + 20  # the expired backlog is gone, the live claims stay


async def test_a_claim_that_could_not_be_recorded_is_refused_and_may_be_retried(
    store: SqliteStore, path: Path
) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("DROP TABLE nonces")

    with pytest.raises(StoreError):
        await store.claim_nonce("shop-a", "n1", T0 + 300, T0)

    connect(path).close()  # puts the table back
    assert await store.claim_nonce("shop-a", "n1", T0 + 300, T0 + 1)
    assert not await store.claim_nonce("shop-a", "n1", T0 + 300, T0 + 2)


async def test_a_pending_claim_and_the_order_after_it_share_one_commit(path: Path) -> None:
    store = await SqliteStore.open(path, lazy_hold_seconds=600)  # no commit of its own, however slow
    before = store.committed_batches

    pending = await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0)
    assert pending is not None
    assert store.committed_batches == before  # held back: nothing asked for a commit yet
    await store.get_order("shop-a", "SHOP-1")  # reads do not commit it either
    await store.create_order(an_order("GW1"))
    await pending.recorded()

    assert store.committed_batches - before == 2  # the read's transaction, then nonce and order together
    assert count_rows(path, "nonces") == 1
    await store.close()


async def test_a_pending_claim_nothing_follows_is_committed_when_asked(path: Path) -> None:
    store = await SqliteStore.open(path, lazy_hold_seconds=600)
    pending = await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0)
    assert pending is not None

    async with asyncio.timeout(5):
        await pending.recorded()

    assert count_rows(path, "nonces") == 1
    assert await store.claim_nonce_pending("shop-a", "n1", T0 + 301, T0 + 1) is None
    await store.close()


async def test_a_pending_claim_nobody_asks_about_is_committed_alone(store: SqliteStore, path: Path) -> None:
    assert await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0) is not None

    for _ in range(200):
        if count_rows(path, "nonces") == 1:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("a held nonce row was never committed")


async def test_close_commits_what_is_held(path: Path) -> None:
    store = await SqliteStore.open(path, lazy_hold_seconds=600)
    assert await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0) is not None
    await store.close()

    assert count_rows(path, "nonces") == 1


async def test_a_reopened_store_refuses_a_pending_claim_of_a_nonce_it_recorded(path: Path) -> None:
    store = await SqliteStore.open(path)
    pending = await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0)
    assert pending is not None
    await pending.recorded()
    await store.close()

    reopened = await SqliteStore.open(path)
    try:
        # Decided by the book alone, which the open filled from the table.
        assert await reopened.claim_nonce_pending("shop-a", "n1", T0 + 301, T0 + 1) is None
        assert await reopened.claim_nonce_pending("shop-a", "n2", T0 + 301, T0 + 1) is not None
    finally:
        await reopened.close()


async def test_a_pending_claim_that_could_not_be_recorded_fails_and_may_be_retried(
    store: SqliteStore, path: Path
) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("DROP TABLE nonces")
    pending = await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0)
    assert pending is not None

    with pytest.raises(StoreError):
        await pending.recorded()

    connect(path).close()  # puts the table back
    again = await store.claim_nonce_pending("shop-a", "n1", T0 + 300, T0 + 1)
    assert again is not None
    await again.recorded()


async def test_blocks_are_read_from_memory_and_survive_reopen(path: Path) -> None:
    store = await SqliteStore.open(path)
    await store.block_account(AccountBlock(account="13800138000", product="mobile.*", created_at=T0))
    await store.block_account(AccountBlock(account="13900139000", until=T0 + 60, created_at=T0))
    before = store.committed_batches
    assert [b.product for b in await store.account_blocks(T0 + 1, "13800138000")] == ["mobile.*"]
    assert store.committed_batches == before  # every order asks: no trip to the store's thread
    await store.close()

    reopened = await SqliteStore.open(path)
    try:
        assert [b.account for b in await reopened.account_blocks(T0 + 1)] == ["13800138000", "13900139000"]
        assert [b.account for b in await reopened.account_blocks(T0 + 61)] == ["13800138000"]
        await reopened.unblock_account("13800138000")
        assert await reopened.account_blocks(T0 + 1, "13800138000") == []
    finally:
        await reopened.close()
    assert count_rows(path, "blocked_accounts") == 1


async def test_a_file_from_before_the_check_schedule_has_its_open_orders_due_at_once(path: Path) -> None:
    """An earlier version's file has no check_at column: open orders must not drop off the schedule."""
    store = await SqliteStore.open(path)
    await store.create_order(an_order("GW1", check_at=T0 + 3600))
    await store.create_order(an_order("GW2", status=OrderStatus.SUCCEEDED, reason=None))
    await store.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP INDEX orders_by_check_at")
        db.execute("ALTER TABLE orders DROP COLUMN check_at")

    reopened = await SqliteStore.open(path)
    try:
        assert [o.uid for o in await reopened.claim_checks(T0, until=T0 + 10)] == ["GW1"]
    finally:
        await reopened.close()
