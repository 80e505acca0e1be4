"""Operator switches: made on one instance, applied on the others; where they meet the file; Redis down.

The rules are tested on `ProcessSwitches` shared by two boards (two instances of one store, with no
network in between); what Redis adds (the record, sharing through it, its outages) on a real
`redis-server` and the 3-node Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from structlog.testing import capture_logs

from gateway.clock import ManualClock
from gateway.config.loader import parse_config
from gateway.metrics import Metrics
from gateway.ratelimit import MemoryRateState
from gateway.redisswitches import KEY, RedisSwitches
from gateway.store import StoreError
from gateway.suppliers import Supplier, build_suppliers, update_suppliers
from gateway.switches import (
    ProcessSwitches,
    SupplierDisabled,
    Switch,
    Switchboard,
    SwitchKind,
    SwitchState,
)
from tests.gateway.redis_clients import KINDS, open_client
from tests.redis_servers import RedisServer, redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]  # fixtures, found by name through `open_client`

DISABLED = SwitchKind.DISABLED
WITHIN_SECONDS = 10.0


def config_text(*, a_disabled: bool = False, names: tuple[str, ...] = ("a", "b")) -> str:
    lines = ["suppliers:"]
    for port, name in enumerate(names, start=1):
        disabled = "true" if name == "a" and a_disabled else "false"
        lines.append(
            f'  {name}: {{protocol: fulu, base_url: "http://127.0.0.1:{port}", '
            f"credentials: {{app_key: k, app_secret: s}}, disabled: {disabled}}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Instance:
    """One gateway's suppliers and switchboard, reloadable as `reload_from_file` would reload it."""

    state: SwitchState
    text: str = field(default_factory=config_text)
    clock: ManualClock = field(default_factory=ManualClock)
    metrics: Metrics = field(default_factory=Metrics)
    suppliers: dict[str, Supplier] = field(init=False)
    board: Switchboard = field(init=False)

    def __post_init__(self) -> None:
        self.suppliers = build_suppliers(
            parse_config(self.text, {}),
            self.metrics,
            clock=self.clock,
            rng=random.Random(1),
            rate_state=MemoryRateState(),
        )
        self.board = Switchboard(
            self.state, {DISABLED: SupplierDisabled(self.suppliers)}, self.clock, watch_seconds=0.01
        )

    def reload(self, text: str) -> None:
        update_suppliers(
            self.suppliers,
            parse_config(text, {}),
            self.metrics,
            clock=self.clock,
            rng=random.Random(1),
            rate_state=MemoryRateState(),
        )

    def disabled(self) -> dict[str, bool]:
        return {name: supplier.disabled for name, supplier in self.suppliers.items()}


async def started(state: SwitchState, text: str | None = None) -> Instance:
    instance = Instance(state) if text is None else Instance(state, text)
    await instance.board.load()
    return instance


@pytest.fixture(params=KINDS)
async def clients(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Redis | ClusterClient, Redis | ClusterClient]]:
    """Two clients on one fresh Redis (server or Cluster): two instances' own connections."""
    async with open_client(request, request.param) as first, open_client(request, request.param) as second:
        yield first, second


async def until(holds: Callable[[], bool], within: float = WITHIN_SECONDS) -> None:
    """Poll `holds()` until it is true, failing the test after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if holds():
                return
            await asyncio.sleep(0.01)


# -- the rules, on one shared store ------------------------------------------------------------


async def test_a_switch_made_on_one_instance_applies_on_another_at_its_next_read() -> None:
    store = ProcessSwitches()
    one, two = await started(store), await started(store)
    made = await one.board.flip(DISABLED, "a", True, by="alice")
    assert (made.on, made.base, made.by, made.at) == (True, False, "alice", one.clock.now())
    assert one.disabled() == {"a": True, "b": False}
    assert two.disabled() == {"a": False, "b": False}  # until it reads the store
    await two.board.refresh()
    assert two.disabled() == {"a": True, "b": False}

    await two.board.flip(DISABLED, "a", False)
    await one.board.refresh()
    assert one.disabled() == two.disabled() == {"a": False, "b": False}


@pytest.mark.parametrize(
    ("file_when_made", "switched_on", "file_at_start", "disabled_at_start"),
    [
        (False, True, False, True),  # the file unchanged since: the stored switch applies
        (True, False, True, False),
        (False, False, True, True),  # the file changed since: the file wins, as at a reload
        (True, True, False, False),
    ],
)
async def test_at_start_a_stored_switch_applies_unless_the_file_changed_since_it_was_made(
    file_when_made: bool, switched_on: bool, file_at_start: bool, disabled_at_start: bool
) -> None:
    store = ProcessSwitches()
    one = await started(store, config_text(a_disabled=file_when_made))
    await one.board.flip(DISABLED, "a", switched_on)
    restarted = await started(store, config_text(a_disabled=file_at_start))
    assert restarted.disabled() == {"a": disabled_at_start, "b": False}


async def test_a_reload_that_changes_the_file_overrules_the_switch_on_that_instance_until_the_next() -> None:
    store = ProcessSwitches()
    one, two = await started(store), await started(store)
    await one.board.flip(DISABLED, "a", True)
    await one.board.flip(DISABLED, "a", False)
    await two.board.refresh()
    assert two.disabled()["a"] is False

    two.reload(config_text(a_disabled=True))  # the file changed it: there, the file is the newer word
    await two.board.refresh()
    assert two.disabled()["a"] is True
    assert one.disabled()["a"] is False  # the other instance follows its own file
    two.reload(config_text(a_disabled=True, names=("a", "b", "c")))  # leaves `disabled` alone
    assert two.disabled()["a"] is True

    # The same switch again (same clock, same fields): a new switch all the same, applied everywhere.
    await one.board.flip(DISABLED, "a", False)
    await two.board.refresh()
    assert two.disabled()["a"] is False


async def test_a_reload_that_leaves_disabled_alone_keeps_the_switch() -> None:
    store = ProcessSwitches()
    one, two = await started(store), await started(store)
    await one.board.flip(DISABLED, "a", True)
    await two.board.refresh()
    two.reload(config_text(names=("a", "b", "c")))
    await two.board.refresh()
    assert two.disabled() == {"a": True, "b": False, "c": False}


async def test_a_supplier_a_reload_adds_meets_the_switch_stored_for_it() -> None:
    store = ProcessSwitches()
    one = await started(store, config_text(names=("a", "b", "c")))
    two = await started(store)
    await one.board.flip(DISABLED, "c", True)
    await two.board.refresh()
    assert "c" not in two.suppliers
    two.reload(config_text(names=("a", "b", "c")))
    assert two.disabled()["c"] is False
    await two.board.refresh()
    assert two.disabled()["c"] is True


class GatedSwitches(ProcessSwitches):
    """Switches whose next read stops after taking its snapshot, until the test lets it return."""

    def __init__(self) -> None:
        super().__init__()
        self.read = asyncio.Event()
        self.release = asyncio.Event()
        self.gate = False

    async def records(self) -> Mapping[str, bytes]:
        snapshot = await super().records()
        if self.gate:
            self.gate = False
            self.read.set()
            await self.release.wait()
        return snapshot


async def test_a_read_begun_before_a_switch_made_here_does_not_undo_it() -> None:
    store = GatedSwitches()
    one, two = await started(store), await started(store)
    await one.board.flip(DISABLED, "a", True)
    store.gate = True
    reading = asyncio.create_task(two.board.refresh())
    await store.read.wait()  # the read holds "disabled", made elsewhere, not yet applied here
    await two.board.flip(DISABLED, "a", False)
    store.release.set()
    await reading
    assert two.disabled()["a"] is False
    await two.board.refresh()
    assert two.disabled()["a"] is False


async def test_per_process_switches_apply_here_and_leave_nothing_to_watch() -> None:
    here = await started(ProcessSwitches())
    await here.board.flip(DISABLED, "b", True, by="bob")
    assert here.disabled() == {"a": False, "b": True}
    assert not here.board.shared
    async with asyncio.timeout(WITHIN_SECONDS):
        await here.board.watch()  # returns at once: no other instance shares these


async def test_a_switch_for_no_such_subject_or_a_board_without_a_lever_is_refused() -> None:
    here = await started(ProcessSwitches())
    with pytest.raises(KeyError):
        await here.board.flip(DISABLED, "nobody", True)
    assert await here.state.records() == {}
    with pytest.raises(ValueError, match="no lever"):
        Switchboard(ProcessSwitches(), {}, ManualClock())


def test_a_record_reads_back_as_the_switch_it_was() -> None:
    switch = Switch(DISABLED, "a:b", True, False, 1_795_000_000.123, None, "0a1b2c3d")
    assert switch.name == "disabled:a:b"
    assert Switch.decode(switch.name, switch.encode()) == switch
    assert orjson.loads(switch.encode()) == {
        "on": True,
        "base": False,
        "at": 1_795_000_000.123,
        "token": "0a1b2c3d",
    }
    for name, record in [
        ("hold:a", switch.encode()),
        ("disabled", switch.encode()),
        ("disabled:a", b"not json"),
        ("disabled:a", b"[1]"),
        ("disabled:a", b'{"on": "yes", "base": false, "at": 1, "token": "t"}'),
        ("disabled:a", b'{"on": true, "base": false, "at": 1}'),
    ]:
        with pytest.raises(ValueError):  # noqa: PT011 - each a different reason, all unreadable
            Switch.decode(name, record)


# -- on Redis ------------------------------------------------------------------------------------


async def test_two_instances_on_redis_share_switches_and_the_record_says_who_and_when(
    clients: tuple[Redis | ClusterClient, Redis | ClusterClient],
) -> None:
    first, second = clients
    one, two = await started(RedisSwitches(first)), await started(RedisSwitches(second))
    assert one.board.shared
    await one.board.flip(DISABLED, "a", True, by="alice")
    await two.board.refresh()
    assert two.disabled() == {"a": True, "b": False}
    await two.board.flip(DISABLED, "b", True)
    await two.board.flip(DISABLED, "a", False)
    await one.board.refresh()
    assert one.disabled() == two.disabled() == {"a": False, "b": True}

    stored = await first.hgetall(KEY)
    assert set(stored) == {b"disabled:a", b"disabled:b"}
    record = orjson.loads(stored[b"disabled:a"])
    assert {key: record[key] for key in ("on", "base", "at")} == {
        "on": False,
        "base": False,
        "at": two.clock.now(),
    }
    assert "by" not in record  # no operator named
    assert orjson.loads(stored[b"disabled:b"])["on"] is True

    restarted = await started(RedisSwitches(first))
    assert restarted.disabled() == {"a": False, "b": True}


async def test_concurrent_switches_on_two_instances_end_the_same_everywhere(
    clients: tuple[Redis | ClusterClient, Redis | ClusterClient],
) -> None:
    first, second = clients
    one, two = await started(RedisSwitches(first)), await started(RedisSwitches(second))
    for _ in range(5):
        await asyncio.gather(one.board.flip(DISABLED, "a", True), two.board.flip(DISABLED, "a", False))
        await asyncio.gather(one.board.refresh(), two.board.refresh())
        assert one.disabled() == two.disabled()


async def test_an_unreadable_record_is_passed_over_once_and_the_others_applied(
    clients: tuple[Redis | ClusterClient, Redis | ClusterClient],
) -> None:
    first, second = clients
    one, two = await started(RedisSwitches(first)), await started(RedisSwitches(second))
    await first.hset(KEY, "disabled:a", b"not json")
    await first.hset(KEY, "hold:everything", b"{}")  # a kind some later gateway may know
    await one.board.flip(DISABLED, "b", True)
    with capture_logs() as logs:
        await two.board.refresh()
        await two.board.refresh()
    assert two.disabled() == {"a": False, "b": True}
    assert sorted(entry["name"] for entry in logs if entry["event"] == "operator_switch_unreadable") == [
        "disabled:a",
        "hold:everything",
    ]


async def test_redis_down_refuses_the_switch_and_the_watch_keeps_the_last_known_ones(
    redis_server: RedisServer,
) -> None:
    first = Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    second = Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        one, two = await started(RedisSwitches(first)), await started(RedisSwitches(second))
        await one.board.flip(DISABLED, "a", True, by="alice")
        with capture_logs() as logs:
            watching = asyncio.create_task(two.board.watch())
            await until(lambda: two.disabled()["a"])

            redis_server.stop()
            with pytest.raises(StoreError):
                await one.board.flip(DISABLED, "a", False)
            assert one.disabled()["a"] is True  # nothing applied where nothing was kept
            await until(lambda: any(e["event"] == "operator_switches_unreadable" for e in logs))
            assert two.disabled()["a"] is True

            redis_server.start()  # unpersisted: the switches it held are gone, and that changes nothing
            await one.board.flip(DISABLED, "b", True)
            await until(lambda: two.disabled()["b"])
            assert two.disabled() == {"a": True, "b": True}
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        # Said once for the outage, however many reads failed (the tests log from warning up).
        assert [e["event"] for e in logs if e["event"].startswith("operator_switches_")] == [
            "operator_switches_unreadable"
        ]
    finally:
        await first.aclose()
        await second.aclose()
