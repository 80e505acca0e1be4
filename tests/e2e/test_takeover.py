"""Several `gateway run` processes on one Redis stay one gateway through failures (CONTRACT.md §6).

Two or three real `gateway run` processes share one Redis store and four simulated suppliers, one per
protocol. A shop places orders through them in turn, as a load balancer would, moving on to the next
instance when one does not answer. Each test then audits every accepted order against the suppliers'
ledgers (`fleet.audit`): the order is known and final as the supplier left it, no account is charged
twice, no upstream id is submitted twice, and the shop was notified of the final state.

- `kill -9` of the instance that every supplier calls back, with orders in flight at it (accepted,
  charging at a supplier, submits on the wire, notifications being sent): the others query the
  suppliers about what it left open, send again the notifications it was cut off sending, and
  finish every order, charging none twice.
- Redis killed and restarted (AOF fsynced at every write) while orders flow through two instances:
  while it is down the instances refuse with 503 and record nothing; no order answered 2xx before is
  lost, every order ends final once Redis is back, and the instances are ready again by themselves.
- The chaos of tests/e2e/test_chaos.py (its faults, knobs and audit) across two instances.

Only what the gateway shows outside is used: the shop API, the admin listener's /readyz, the
suppliers' ledgers and the notifications; never its internals (which instance works on which order
is its own business).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession, ClientTimeout

from gateway.simulator import ChargeState, Simulator
from gateway.simulator.faults import Fault
from tests.e2e.fleet import (
    FINAL,
    GatewayProcess,
    NotificationSink,
    admin_listening_on,
    audit,
    eventually,
    place_on_any,
    read_orders,
    ready_status,
    restartable_port,
    seeds,
    settle,
    start_supplier,
    tally,
)
from tests.e2e.harness import Shop, SupplierSpec, config_yaml
from tests.e2e.test_chaos import FAULT_KNOBS, ROOMY
from tests.e2e.test_chaos import KNOBS as CHAOS_KNOBS
from tests.e2e.test_chaos import NOTIFY as CHAOS_NOTIFY
from tests.e2e.test_protocols import PROTOCOLS, offers
from tests.redis_servers import RedisServer
from tests.tools import need

# Every supplier answers "processing" after a slow submit and reports a while later, so that a kill
# finds submits on the wire and many orders accepted but not settled; some fail (the gateway routes
# on), dayuanren delivers some partly, ofpay refuses a few, fulu drops some callbacks.
KNOBS: Final[dict[str, dict[str, Any]]] = {
    "fulu": {"latency": 0.3, "result_after": 1.0, "success_rate": 0.85, "callback_drop_rate": 0.1},
    "ofpay": {"latency": 0.2, "result_after": 1.5, "success_rate": 0.85, "refuse_rate": 0.05},
    "juhe": {"latency": 0.25, "result_after": 0.8, "success_rate": 0.9, "callback_duplicate_rate": 0.3},
    "dayuanren": {"latency": 0.2, "result_after": 1.2, "success_rate": 0.85, "partial_rate": 0.2},
}
ORDERS: Final = {
    "max_attempts": 2,
    "reconcile_after": "500ms",
    "reconcile_every": "300ms",
    # Above the supplier timeout: "not found" is trusted only once a submit cannot still be on its way.
    "not_found_grace": "2s",
}
# A notification cut off by a kill is leased for timeout + 5 s; retries of refused ones are quick.
NOTIFY: Final = {"timeout": "1s", "max_attempts": 10, "backoff": {"initial": "200ms", "max": "1s"}}
NOTIFY_ACK_SECONDS: Final = 0.3  # well within the notify timeout
SUPPLIER: Final = {"rate_limit": {"rate": 1000, "per": "1s", "burst": 200, "max_wait": "250ms"}}
ORDER_INTERVAL_SECONDS: Final = 0.03
TAIL_SECONDS: Final = 1.5  # orders keep coming to the survivors (or the recovered fleet) this long
SETTLE_SECONDS: Final = 45.0
PLACE_WITHIN_SECONDS: Final = 30.0

# The chaos across two instances: test_chaos's knobs, with crashes drawn more often (a crash stops a
# supplier for everyone, the case two instances must survive together) so that a few hundred orders
# draw every fault; the reconciler runs on the real clock, so its windows are short.
FLEET_CHAOS_KNOBS: Final[dict[str, dict[str, Any]]] = {
    name: {**knobs, **({"crash_rate": 0.03} if "crash_rate" in knobs else {})}
    for name, knobs in CHAOS_KNOBS.items()
}
FLEET_CHAOS_ORDERS: Final = {
    "max_attempts": 2,
    "reconcile_after": "1s",
    "reconcile_every": "300ms",
    "not_found_grace": "5s",  # above the simulators' lag_for (3 s): the one lie the rule allows for
}
CHAOS_MIN_ORDERS: Final = 300  # as many as the single instance's chaos
CHAOS_MAX_ORDERS: Final = 500  # placing goes on past the minimum until every fault has been drawn
CHAOS_CONCURRENCY: Final = 16


@dataclass
class Fleet:
    """`gateway run` processes on one store: the shop signing for each, and their admin listeners."""

    processes: list[GatewayProcess]
    shops: list[Shop]
    admin_urls: list[str]

    def troubles(self, indexes: Sequence[int]) -> list[str]:
        return [f"instance {i}: {line}" for i in indexes for line in self.processes[i].troubles()]

    async def stop(self) -> dict[int, int]:
        """SIGTERM to every running process: the exit code of each, by index."""
        return {
            index: await process.stop() for index, process in enumerate(self.processes) if process.running
        }

    def kill_all(self) -> None:
        for process in self.processes:
            if process.running:
                process.kill()


@dataclass
class Traffic:
    """Orders placed through the fleet in turn, one every `interval`, each sent on to the next instance
    until one answers 201 or 200: what each answered, which instance answered and when."""

    shops: Sequence[Shop]
    prefix: str
    notify_url: str
    interval: float = ORDER_INTERVAL_SECONDS
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    answered_by: dict[str, int] = field(default_factory=dict)
    answered_at: dict[str, float] = field(default_factory=dict)  # monotonic
    _placing: bool = field(default=False, init=False, repr=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False, repr=False)
    _producer: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _placed: int = field(default=0, init=False, repr=False)

    def order(self, number: int) -> dict[str, Any]:
        return {
            "order_id": f"{self.prefix}-{number:05d}",
            "product": "mobile.cmcc.50",
            "account": f"139{number:08d}",  # one account per order: a double charge shows
            "notify_url": self.notify_url,
            "wait_seconds": 0,
        }

    async def place(self, number: int) -> None:
        order = self.order(number)
        _, answer, index = await place_on_any(
            self.shops, order, within=PLACE_WITHIN_SECONDS, first=number % len(self.shops)
        )
        self.accepted[order["order_id"]] = answer
        self.answered_by[order["order_id"]] = index
        self.answered_at[order["order_id"]] = time.monotonic()

    def start(self) -> None:
        self._placing = True
        self._producer = asyncio.create_task(self._produce())

    async def _produce(self) -> None:
        while self._placing:
            self._tasks.append(asyncio.create_task(self.place(self._placed)))
            self._placed += 1
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """No new orders; wait until every one placed is answered (or its placing failed)."""
        self._placing = False
        if self._producer is not None:
            await self._producer
        await asyncio.gather(*self._tasks)

    def cancel(self) -> None:
        for task in (*self._tasks, *([self._producer] if self._producer else [])):
            task.cancel()


async def _suppliers(
    knobs: Mapping[str, Mapping[str, Any]],
    seed: int,
    callback_port: int,
    cleanups: list[Callable[[], Awaitable[None]]],
    *,
    supplier_timeout: str,
    extra: Mapping[str, Any],
) -> tuple[dict[str, Simulator], dict[str, SupplierSpec]]:
    """One simulated supplier per protocol; fulu and juhe call back `callback_port` (their requests
    carry no callback URL), ofpay and dayuanren the URL the gateway put in the submit."""
    simulators: dict[str, Simulator] = {}
    specs: dict[str, SupplierSpec] = {}
    for index, (name, supplier_knobs) in enumerate(knobs.items()):
        spec = SupplierSpec(
            protocol=name,
            credentials=dict(PROTOCOLS[name]["credentials"]),
            timeout=supplier_timeout,
            extra=dict(extra),
            knobs={**supplier_knobs, "seed": seed * 100 + index},
        )
        simulators[name], spec.url = await start_supplier(name, spec, callback_port, cleanups)
        specs[name] = spec
    return simulators, specs


async def _launch(
    tmp_path: Path,
    ports: Sequence[int],
    specs: Mapping[str, SupplierSpec],
    *,
    store: str,
    orders: Mapping[str, Any],
    notify: Mapping[str, Any],
    session: ClientSession,
    public_url: str | None = None,
) -> Fleet:
    """One `gateway run` per port, all on `store`, each in its own folder (config and logs); started
    together, returned once every one listens. `public_url`: the callback address every instance gives
    suppliers (by default each its own)."""
    processes: list[GatewayProcess] = []
    admin_urls: list[str] = []
    for number, port in enumerate(ports):
        folder = tmp_path / f"instance-{number}"
        folder.mkdir()
        admin_port = restartable_port()
        text = config_yaml(
            port,
            specs,
            offers(*((name, name) for name in specs)),
            store=store,
            routing="weighted",
            orders=orders,
            notify=notify,
            server={"public_url": public_url} if public_url else None,
        )
        config = folder / "gateway.yaml"
        config.write_text(admin_listening_on(text, admin_port))
        processes.append(GatewayProcess(config, port, folder))
        admin_urls.append(f"http://127.0.0.1:{admin_port}")
    try:
        for process in processes:
            process.spawn()
        for process in processes:
            await process.ready()
    except BaseException:
        # No fleet reaches the caller to clean up: without this, the ones that did start outlive the test.
        for process in processes:
            if process.running:
                process.kill()
        raise
    shops = [Shop(session, f"http://127.0.0.1:{port}") for port in ports]
    return Fleet(processes, shops, admin_urls)


def _unsettled(simulators: Mapping[str, Simulator]) -> int:
    """Orders a supplier charged and has not finished: their result is still to be reported."""
    return sum(
        1
        for simulator in simulators.values()
        for entry in simulator.ledger.entries()
        if entry.charged and entry.state is ChargeState.CHARGING
    )


def _mid_send(simulators: Mapping[str, Simulator], at: float) -> int:
    """Submits the suppliers had recorded but not yet answered at monotonic time `at`."""
    return sum(
        1
        for name, simulator in simulators.items()
        for entry in simulator.ledger.entries()
        if at - simulator.knobs.latency < entry.accepted_at <= at
    )


def _changed_after_final(
    first_final: Mapping[str, str], orders: Mapping[str, dict[str, Any] | None]
) -> list[str]:
    return [
        f"{order_id}: was {status}, now {now}"
        for order_id, status in first_final.items()
        if (now := (orders[order_id] or {}).get("status")) != status
    ]


def _changed_after_answer(
    accepted: Mapping[str, dict[str, Any]], orders: Mapping[str, dict[str, Any] | None]
) -> list[str]:
    return [
        f"{order_id}: answered {answer['status']} when placed, then {now}"
        for order_id, answer in accepted.items()
        if answer["status"] in FINAL and (now := (orders[order_id] or {}).get("status")) != answer["status"]
    ]


async def _finish(
    shop: Shop, traffic: Traffic, simulators: Mapping[str, Simulator], sink: NotificationSink
) -> tuple[dict[str, str], dict[str, dict[str, Any] | None]]:
    """Until every order is final and notified and the suppliers are idle (bounded): (first final
    status of each order, every order as the gateway shows it at the end)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    first_final = await settle(shop, traffic.accepted, within=SETTLE_SECONDS)
    # A notification cut off by a kill comes due again once its lease expires.
    await eventually(
        lambda: all(o in sink.received for o in first_final), within=max(0.0, deadline - time.monotonic())
    )
    for simulator in simulators.values():
        async with asyncio.timeout(max(5.0, deadline - time.monotonic())):
            await simulator.idle()  # every charge final and every callback sent, for the audit
    return first_final, await read_orders(shop, traffic.accepted)


def _ledgers(simulators: Mapping[str, Simulator]) -> dict[str, Any]:
    return {name: simulator.ledger for name, simulator in simulators.items()}


def _takeover_cases() -> list[Any]:
    """Each seed once, on two instances and three in turn: `TAKEOVER_SEEDS=1,2,...,10` for a hunt."""
    return [
        pytest.param(seed, 2 + index % 2, id=f"seed{seed}-{2 + index % 2}instances")
        for index, seed in enumerate(seeds("TAKEOVER_SEEDS", [1, 2]))
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "count"), _takeover_cases())
async def test_kill_9_of_an_instance_leaves_its_orders_to_the_others(
    redis_server: RedisServer, tmp_path: Path, seed: int, count: int
) -> None:
    rng = random.Random(seed)
    ports = [restartable_port() for _ in range(count)]
    cleanups: list[Callable[[], Awaitable[None]]] = []
    # The shops take a moment to acknowledge: a notification the killed instance was sending is not
    # received, and must be sent again by another.
    sink = NotificationSink(ack_delay=NOTIFY_ACK_SECONDS)
    fleet: Fleet | None = None
    traffic: Traffic | None = None
    try:
        # Every supplier calls back the first instance, the one killed: from the kill on, nothing
        # reaches the others but their own queries.
        simulators, specs = await _suppliers(
            KNOBS, seed, ports[0], cleanups, supplier_timeout="1s", extra=SUPPLIER
        )
        notify_url = await sink.start()
        session = ClientSession(timeout=ClientTimeout(total=5))
        cleanups.append(session.close)
        fleet = await _launch(
            tmp_path,
            ports,
            specs,
            store=redis_server.url,
            orders=ORDERS,
            notify=NOTIFY,
            session=session,
            public_url=f"http://127.0.0.1:{ports[0]}",
        )
        traffic = Traffic(fleet.shops, prefix=f"K{seed}", notify_url=notify_url)
        async with asyncio.timeout(80):
            traffic.start()
            await asyncio.sleep(rng.uniform(1.5, 3.0))
            # Then at a moment with something of each kind under way (bounded: if none comes, the
            # kill goes ahead and the checks below say what it missed). Notifications are mostly the
            # first instance's: the suppliers call it back, so it finishes most orders.
            await eventually(
                lambda: sink.acknowledging > 0 and _mid_send(simulators, time.monotonic()) > 1,
                within=10,
                every=0.005,
            )
            killed_at = time.monotonic()
            fleet.processes[0].kill()
            unsettled, mid_send = _unsettled(simulators), _mid_send(simulators, killed_at)
            answered_by_killed = sum(1 for index in traffic.answered_by.values() if index == 0)
            await asyncio.sleep(TAIL_SECONDS)
            await traffic.stop()
            first_final, orders = await _finish(fleet.shops[1], traffic, simulators, sink)
            cut_off = sink.cut_off

        problems = audit(orders, _ledgers(simulators), notified=sink.received)
        problems += _changed_after_final(first_final, orders)
        problems += _changed_after_answer(traffic.accepted, orders)
        survivors = range(1, count)
        troubles = fleet.troubles(survivors)
        exit_codes = await fleet.stop()
        lost_callbacks = sum(
            e.callbacks_sent - e.callbacks_acknowledged
            for s in simulators.values()
            for e in s.ledger.entries()
        )
        report = (
            f"seed {seed}, {count} instances: {len(traffic.accepted)} orders,"
            f" {answered_by_killed} answered by the killed instance; at the kill {unsettled} charging at"
            f" a supplier, {mid_send} submits mid-send, {cut_off} notifications cut off;"
            f" {lost_callbacks} callbacks unanswered;"
            f" outcomes {tally(orders)}"
        )
        print(report)
        assert problems == [], f"{report}\n" + "\n".join(problems[:50])
        assert troubles == [], f"{report}\nthe survivors logged:\n" + "\n".join(troubles[:20])
        assert exit_codes == dict.fromkeys(survivors, 0), f"exit codes after SIGTERM: {exit_codes}"
        # The kill left the others something of each kind to take over (orders it had accepted, orders
        # the suppliers were still working on, submits on the wire, notifications under way), or the
        # run proved less than it claims.
        assert answered_by_killed > 0, report
        assert unsettled > 0, report
        assert mid_send > 0, report
        assert cut_off > 0, report
    finally:
        if traffic is not None:
            traffic.cancel()
        if fleet is not None:
            fleet.kill_all()
        for cleanup in reversed(cleanups):
            await cleanup()
        await sink.close()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A `redis-server` that a kill loses nothing of: its AOF is fsynced before each write is answered."""
    need("redis-server", "redis-cli")
    server = RedisServer(tmp_path / "redis", durable=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _all_ready(session: ClientSession, fleet: Fleet, within: float) -> dict[str, int]:
    """Poll every instance's /readyz until all answer 200 or `within` passes: the last status of each."""
    deadline = time.monotonic() + within
    while True:
        statuses = {url: await ready_status(session, url) for url in fleet.admin_urls}
        if set(statuses.values()) == {200} or time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds("OUTAGE_SEEDS", [1]))
async def test_redis_killed_and_restarted_loses_no_order_and_the_fleet_recovers_by_itself(
    durable_redis: RedisServer, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    ports = [restartable_port(), restartable_port()]
    cleanups: list[Callable[[], Awaitable[None]]] = []
    sink = NotificationSink()
    fleet: Fleet | None = None
    traffic: Traffic | None = None
    try:
        simulators, specs = await _suppliers(
            KNOBS, seed, ports[0], cleanups, supplier_timeout="1s", extra=SUPPLIER
        )
        notify_url = await sink.start()
        session = ClientSession(timeout=ClientTimeout(total=5))
        cleanups.append(session.close)
        fleet = await _launch(
            tmp_path, ports, specs, store=durable_redis.url, orders=ORDERS, notify=NOTIFY, session=session
        )
        traffic = Traffic(fleet.shops, prefix=f"R{seed}", notify_url=notify_url)
        probes: list[str] = []
        refusals: list[str] = []
        async with asyncio.timeout(85):
            traffic.start()
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            answered_before = dict(traffic.accepted)  # each one answered while Redis was up
            down_at = time.monotonic()
            await asyncio.to_thread(durable_redis.stop)  # SIGKILL
            unsettled = _unsettled(simulators)
            # While Redis is down: not ready, and an order is refused with 503 and recorded nowhere.
            for index, shop in enumerate(fleet.shops):
                probe = {**traffic.order(90_000 + index), "order_id": f"DOWN-{seed}-{index}"}
                status, body, headers = await shop.post_raw(orjson.dumps(probe))
                probes.append(probe["order_id"])
                code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                if (status, code) != (503, "store_unavailable") or "Retry-After" not in headers:
                    refusals.append(f"instance {index}: POST answered {status} {body} {dict(headers)}")
                readiness = await ready_status(session, fleet.admin_urls[index])
                if readiness != 503:
                    refusals.append(f"instance {index}: /readyz answered {readiness} with Redis down")
            await asyncio.sleep(max(0.0, rng.uniform(1.5, 3.0) - (time.monotonic() - down_at)))
            await asyncio.to_thread(durable_redis.start)  # on the same port, from its AOF
            back_at = time.monotonic()
            readiness_after = await _all_ready(session, fleet, within=20)
            await asyncio.sleep(TAIL_SECONDS)
            await traffic.stop()
            first_final, orders = await _finish(fleet.shops[0], traffic, simulators, sink)
            probed = await read_orders(fleet.shops[1], probes)

        problems = audit(orders, _ledgers(simulators), notified=sink.received)
        problems += _changed_after_final(first_final, orders)
        problems += _changed_after_answer(traffic.accepted, orders)
        lost = [order_id for order_id in answered_before if orders[order_id] is None]
        recorded = [order_id for order_id, order in probed.items() if order is not None]
        answered_after = {traffic.answered_by[o] for o, at in traffic.answered_at.items() if at > back_at}
        exit_codes = await fleet.stop()
        report = (
            f"seed {seed}: {len(traffic.accepted)} orders, {len(answered_before)} answered before Redis was"
            f" killed with {unsettled} charging at a supplier, Redis down {back_at - down_at:.1f}s;"
            f" outcomes {tally(orders)}"
        )
        print(report)
        assert lost == [], f"{report}\nanswered 2xx before the outage, unknown after it: {lost}"
        assert problems == [], f"{report}\n" + "\n".join(problems[:50])
        assert refusals == [], f"{report}\n" + "\n".join(refusals)
        assert recorded == [], f"{report}\nanswered 503, yet recorded: {recorded}"
        # Back by themselves: ready, and each instance took orders again.
        assert set(readiness_after.values()) == {200}, (
            f"{report}\n/readyz after Redis returned: {readiness_after}"
        )
        assert answered_after == {0, 1}, (
            f"{report}\ninstances that answered after Redis returned: {answered_after}"
        )
        assert exit_codes == {0: 0, 1: 0}, f"exit codes after SIGTERM: {exit_codes}"
        # Orders were under way when Redis went: accepted, and charging at a supplier.
        assert answered_before, report
        assert unsettled > 0, report
    finally:
        if traffic is not None:
            traffic.cancel()
        if fleet is not None:
            fleet.kill_all()
        for cleanup in reversed(cleanups):
            await cleanup()
        await sink.close()


def _drawn(simulators: Mapping[str, Simulator]) -> dict[Fault, int]:
    return {fault: sum(len(s.ledger.with_fault(fault)) for s in simulators.values()) for fault in FAULT_KNOBS}


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds("FLEET_CHAOS_SEEDS", [3]))
async def test_chaos_on_two_instances_never_charges_twice_and_settles_every_order(
    redis_server: RedisServer, tmp_path: Path, seed: int
) -> None:
    ports = [restartable_port(), restartable_port()]
    cleanups: list[Callable[[], Awaitable[None]]] = []
    sink = NotificationSink()
    fleet: Fleet | None = None
    try:
        simulators, specs = await _suppliers(
            FLEET_CHAOS_KNOBS, seed, ports[0], cleanups, supplier_timeout="300ms", extra=ROOMY
        )
        notify_url = await sink.start()
        session = ClientSession(timeout=ClientTimeout(total=5))
        cleanups.append(session.close)
        fleet = await _launch(
            tmp_path,
            ports,
            specs,
            store=redis_server.url,
            orders=FLEET_CHAOS_ORDERS,
            notify=CHAOS_NOTIFY,
            session=session,
        )
        traffic = Traffic(fleet.shops, prefix=f"X{seed}", notify_url=notify_url)
        slots = asyncio.Semaphore(CHAOS_CONCURRENCY)

        async def place(number: int) -> None:
            async with slots:
                await traffic.place(number)

        started = time.monotonic()
        async with asyncio.timeout(85):
            placed = 0
            while placed < CHAOS_MIN_ORDERS or (
                placed < CHAOS_MAX_ORDERS and not all(_drawn(simulators).values())
            ):
                await asyncio.gather(*(place(number) for number in range(placed, placed + 50)))
                placed += 50
            first_final, orders = await _finish(fleet.shops[0], traffic, simulators, sink)

        problems = audit(orders, _ledgers(simulators), notified=sink.received)
        problems += _changed_after_final(first_final, orders)
        problems += _changed_after_answer(traffic.accepted, orders)
        attempts = [a for order in orders.values() if order is not None for a in order["attempts"]]
        ledgers = [e for s in simulators.values() for e in s.ledger.entries()]
        faults = {
            "not charged": sum(not e.charged for e in ledgers),
            "failovers": sum(len(o["attempts"]) > 1 for o in orders.values() if o is not None),
            "callbacks": sum(e.callbacks_sent for e in ledgers),
            "forged": sum(e.forged_callbacks_sent for e in ledgers),
        }
        answered_by = {i: list(traffic.answered_by.values()).count(i) for i in range(len(ports))}
        drawn = _drawn(simulators)
        troubles = fleet.troubles(range(len(ports)))
        exit_codes = await fleet.stop()
        report = (
            f"seed {seed}: {len(traffic.accepted)} orders in {time.monotonic() - started:.1f}s,"
            f" {len(attempts)} attempts, answered by instance {answered_by}, {faults}, faults {dict(drawn)},"
            f" outcomes {tally(orders)}"
        )
        print(report)
        assert problems == [], f"{report}\n" + "\n".join(problems[:50])
        assert troubles == [], f"{report}\nthe instances logged:\n" + "\n".join(troubles[:20])
        assert exit_codes == {0: 0, 1: 0}, f"exit codes after SIGTERM: {exit_codes}"
        # The faults really happened, and both instances took orders, or the run proved less.
        assert all(count > 0 for count in drawn.values()), report
        assert faults["forged"] > 0, report
        assert set(traffic.answered_by.values()) == {0, 1}, report
        # Nothing secret reached a shop or a log line: no supplier credential, no signed query string;
        # nothing a shop reads names a supplier's host and port.
        shop_visible = [orjson.dumps(o) for o in (*traffic.accepted.values(), *orders.values()) if o]
        shop_visible += sink.bodies
        logged = [
            path.read_bytes() for process in fleet.processes for path in process.logs.glob("gateway-*.log")
        ]
        secrets = [
            value.encode()
            for name in FLEET_CHAOS_KNOBS
            for value in PROTOCOLS[name]["credentials"].values()
            if len(value) >= 6  # ids such as userid 10001 are not secrets, and would match by chance
        ]
        for text in (*shop_visible, *logged):
            leaked = [s for s in (*secrets, b"sign=", b"userpws=", b"key=") if s in text]
            assert not leaked, f"{leaked} in {text[:300]!r}"
        supplier_ports = [
            listener.url.rsplit(":", 1)[1].encode() for s in simulators.values() for listener in s.listeners
        ]
        for body in shop_visible:
            assert not any(b"127.0.0.1:" + port in body for port in supplier_ports), body[:300]
    finally:
        if fleet is not None:
            fleet.kill_all()
        for cleanup in reversed(cleanups):
            await cleanup()
        await sink.close()
