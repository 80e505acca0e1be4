"""Support for the crash and chaos tests: a real `gateway run` process, a shop that retries through
restarts, the shops' notification endpoint, and the audit of every order against the suppliers' ledgers.

Test support only: it sees the gateway through its shop API and the simulators through their ledgers.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.auth import notification_signature
from gateway.config.model import SimulateConfig
from gateway.money import format_money
from gateway.simulator import ChargeState, Ledger, LedgerEntry, Simulator, build_simulator
from tests.e2e.harness import SECRET, Shop, SupplierSpec

ROOT: Final = Path(__file__).resolve().parents[2]
FINAL: Final = frozenset({"succeeded", "failed", "partial"})
# Ledger states in which the supplier put (or is putting) value on the account.
DELIVERING: Final = frozenset({ChargeState.CHARGING, ChargeState.SUCCEEDED, ChargeState.PARTIAL})
# Attempt outcomes after which the gateway may move on: the supplier certainly kept nothing.
NOTHING_KEPT: Final = frozenset({"failed", "not_executed"})
OPEN: Final = frozenset({"processing", "unknown"})


async def start_supplier(
    name: str,
    spec: SupplierSpec,
    gateway_port: int,
    cleanups: list[Callable[[], Awaitable[None]]],
    *,
    callback_attempts: int = 8,
    callback_retry_seconds: float = 0.3,
) -> tuple[Simulator, str]:
    """A simulated supplier on a free loopback port: (simulator, base URL).

    Unlike the harness's, its callbacks keep coming for a couple of seconds, as a real supplier's
    do for much longer: a restart shorter than that loses none, a longer one leaves them to queries.
    """
    simulator = build_simulator(
        spec.protocol,
        credentials=spec.credentials,
        knobs=SimulateConfig(**spec.knobs),
        callback_url=f"http://127.0.0.1:{gateway_port}/callbacks/{name}",
        callback_attempts=callback_attempts,
        callback_retry_seconds=callback_retry_seconds,
        callback_timeout_seconds=1.0,
    )
    listener = await simulator.serve("127.0.0.1")
    cleanups.append(listener.close)
    return simulator, listener.url


def restartable_port() -> int:
    """A free loopback port below the ephemeral range, for a listener that comes and goes.

    While the gateway is down, a port from the ephemeral range could be taken as the local end of
    some client connection, and the restarted gateway could not bind it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(10_000, max(low, 10_001))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def seeds(variable: str, default: Sequence[int]) -> list[int]:
    """The seeds to run: `default`, or a comma-separated list in the environment for a longer hunt."""
    value = os.environ.get(variable, "").strip()
    return [int(part) for part in value.split(",") if part.strip()] if value else list(default)


class GatewayProcess:
    """`python -m gateway run -c CONFIG`, one process at a time, killed and restarted by the test.

    Each process writes its output to its own file under `logs`, for the failure messages.
    """

    def __init__(self, config: Path, port: int, logs: Path) -> None:
        self.config = config
        self.port = port
        self.logs = logs
        self.started = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def spawn(self) -> None:
        assert self._process is None, "one gateway process at a time"
        self.started += 1
        with (self.logs / f"gateway-{self.started}.log").open("wb") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, within: float = 60.0) -> None:
        """Until the shop listener accepts connections; it binds only after start-up recovery ran.

        `within` guards against a hang: a start takes about a second, far longer on a loaded machine.
        A process that does not listen in time is killed, so that it does not outlive the test.
        """
        process = self._process
        assert process is not None
        deadline = time.monotonic() + within
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited with {process.returncode}:\n{self.output_tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(
                        f"gateway not listening after {within}s:\n{self.output_tail()}"
                    ) from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def start(self) -> None:
        self.spawn()
        await self.ready()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the gateway."""
        process = self._process
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self._process = None

    async def stop(self, within: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; killed if it does not come. Returns the exit code."""
        process = self._process
        if process is None:
            return 0
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, within)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=10)
        self._process = None
        return code

    def output_tail(self, chars: int = 3000) -> str:
        path = self.logs / f"gateway-{self.started}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def troubles(self) -> list[str]:
        """Log lines of every process so far at level error, or not JSON at all (a traceback, say)."""
        found = []
        for number in range(1, self.started + 1):
            path = self.logs / f"gateway-{number}.log"
            for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    event = None
                if not isinstance(event, dict) or event.get("level") in ("error", "critical"):
                    found.append(f"gateway-{number}: {line}")
        return found


@dataclass(frozen=True, slots=True)
class Notice:
    status: str
    signed: bool  # the signature verified with the shop's secret


@dataclass
class NotificationSink:
    """The shops' notify_url: records every POST by order_id and always acknowledges.

    With `ack_delay` the shop takes that long to acknowledge, and records a POST only then: one whose
    sender hangs up (or dies) first is counted in `cut_off`, not in `received` (the test server
    cancels the handler), so only a POST sent again can make up for it.
    """

    secret: bytes = SECRET.encode()
    received: dict[str, list[Notice]] = field(default_factory=lambda: defaultdict(list))
    bodies: list[bytes] = field(default_factory=list)  # every POST as sent, for what shops may read
    server: TestServer | None = None
    ack_delay: float = 0.0
    cut_off: int = 0
    acknowledging: int = 0  # POSTs received and not yet acknowledged (with `ack_delay`)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/notify", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/notify"))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = notification_signature(self.secret, request.headers.get("X-Gateway-Timestamp", ""), body)
        signed = hmac.compare_digest(expected, request.headers.get("X-Gateway-Signature", ""))
        doc = orjson.loads(body)
        self.bodies.append(body)
        if self.ack_delay > 0:
            self.acknowledging += 1
            try:
                await asyncio.sleep(self.ack_delay)
            except asyncio.CancelledError:
                self.cut_off += 1
                raise
            finally:
                self.acknowledging -= 1
        self.received[doc["order_id"]].append(Notice(status=doc["status"], signed=signed))
        return web.Response(text="ok")


async def eventually(done: Callable[[], bool], *, within: float, every: float = 0.1) -> bool:
    """Poll `done` until it holds or `within` seconds pass; whether it held."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
    return True


class Rejected(Exception):
    """The gateway answered an order with something other than 201, 200 or a retryable 503."""


async def place_until_answered(
    shop: Shop, order: Mapping[str, Any], *, within: float, pause: float = 0.05, max_pause: float = 0.5
) -> tuple[int, dict[str, Any]]:
    """POST `order` until the gateway answers 201 or 200, through restarts: always the same body.

    A socket error may hide an order the dead gateway had already stored, so only the same
    `order_id` with the same body is ever sent again; the gateway's idempotency settles which.
    The pause grows after each refusal, as a shop's should: two dozen shops retrying a 503 every
    50 ms would themselves load a busy machine that is already timing suppliers out.
    """
    status, answer, _ = await place_on_any([shop], order, within=within, pause=pause, max_pause=max_pause)
    return status, answer


async def place_on_any(
    shops: Sequence[Shop],
    order: Mapping[str, Any],
    *,
    within: float,
    first: int = 0,
    pause: float = 0.05,
    max_pause: float = 0.5,
) -> tuple[int, dict[str, Any], int]:
    """POST `order` as a load balancer before several instances would, until one answers 201 or 200.

    To `shops[first]` first, then after a socket error or a 503 to the next one in turn, waiting a
    little longer after each (up to `max_pause`) so that a fleet with its store down is not flooded.
    Always the same body: whichever instance stored it, the shared store makes it one order.
    Returns (status, answer, index in `shops` of the instance that answered).
    """
    body = orjson.dumps(order)
    deadline = time.monotonic() + within
    index = first % len(shops)
    while True:
        try:
            status, answer, _ = await shops[index].post_raw(body)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            status, answer = 0, None
        if status in (200, 201):
            return status, answer, index
        if status not in (0, 503):
            raise Rejected(f"{order['order_id']}: HTTP {status} {answer}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{order['order_id']}: not accepted within {within}s (last: {status})")
        index = (index + 1) % len(shops)
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, max_pause)


async def settle(
    shop: Shop, order_ids: Iterable[str], *, within: float, every: float = 0.3
) -> dict[str, str]:
    """Read the orders until each is final or `within` seconds pass: the first final status of each.

    What is missing from the answer was not final in time; the audit says why.
    """
    pending = set(order_ids)
    first_final: dict[str, str] = {}
    deadline = time.monotonic() + within
    while pending and time.monotonic() < deadline:
        for order_id, order in (await read_orders(shop, pending)).items():
            if order is not None and order["status"] in FINAL:
                first_final[order_id] = order["status"]
                pending.discard(order_id)
        if pending:
            await asyncio.sleep(every)
    return first_final


def admin_listening_on(config_text: str, port: int) -> str:
    """`config_text` (a harness `config_yaml`) with its admin listener on `port` instead of a free one,
    so that the test can reach /readyz and /admin/* of a `gateway run` process."""
    doc = yaml.safe_load(config_text)
    doc["admin"]["listen"] = f"127.0.0.1:{port}"
    return str(yaml.safe_dump(doc, sort_keys=False))


async def ready_status(session: aiohttp.ClientSession, admin_url: str) -> int:
    """The HTTP status of `GET /readyz` on an admin listener; 0 when nothing answers."""
    try:
        async with session.get(admin_url + "/readyz") as response:
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def read_orders(
    shop: Shop, order_ids: Iterable[str], *, concurrency: int = 16
) -> dict[str, dict[str, Any] | None]:
    """GET each order (None where the gateway says 404); socket errors propagate."""
    slots = asyncio.Semaphore(concurrency)

    async def one(order_id: str) -> tuple[str, dict[str, Any] | None]:
        async with slots:
            status, body = await shop.get(order_id)
        if status == 404:
            return order_id, None
        assert status == 200, (order_id, status, body)
        return order_id, body

    return dict(await asyncio.gather(*(one(order_id) for order_id in order_ids)))


def _entries_by_account(ledgers: Mapping[str, Ledger]) -> dict[str, list[tuple[str, LedgerEntry]]]:
    by_account: dict[str, list[tuple[str, LedgerEntry]]] = defaultdict(list)
    for name, ledger in ledgers.items():
        for entry in ledger.entries():
            by_account[entry.account].append((name, entry))
    return by_account


def audit(
    orders: Mapping[str, dict[str, Any] | None],
    ledgers: Mapping[str, Ledger],
    *,
    notified: Mapping[str, Sequence[Notice]] | None = None,
    may_stay_processing: frozenset[str] = frozenset(),
) -> list[str]:
    """Every breach of DESIGN.md's rule, as one line each; empty when the run was clean.

    `orders` maps each accepted order_id (every account used once) to the gateway's view of it.
    `may_stay_processing` holds the reasons a processing order may be left with. `notified`,
    when given, is what the shops' endpoint received: each final order must be among it.
    """
    problems: list[str] = []
    by_account = _entries_by_account(ledgers)
    accounts: set[str] = set()
    for order_id, order in orders.items():
        if order is None:
            problems.append(f"{order_id}: accepted, but the gateway does not know it")
            continue
        accounts.add(order["account"])
        problems.extend(f"{order_id}: {p}" for p in _audit_order(order, ledgers, may_stay_processing))
        if notified is not None and order["status"] in FINAL:
            problems.extend(f"{order_id}: {p}" for p in _audit_notices(order, notified.get(order_id, ())))
    for account, entries in by_account.items():
        delivering = [
            f"{name}:{e.upstream_order_id}" for name, e in entries if e.charged and e.state in DELIVERING
        ]
        if len(delivering) > 1:
            problems.append(f"account {account} charged {len(delivering)} times: {delivering}")
        if account not in accounts and any(e.charged for _, e in entries):
            problems.append(f"account {account} charged for an order no shop was told was accepted")
    for name, ledger in ledgers.items():
        problems.extend(
            f"{name}: upstream id {e.upstream_order_id} submitted {e.submissions} times"
            for e in ledger.duplicates()
        )
        if ledger.forgotten:  # an audit over a ledger that dropped entries would prove nothing
            problems.append(f"{name}: the ledger forgot {ledger.forgotten} settled entries")
    return problems


def _audit_order(
    order: dict[str, Any], ledgers: Mapping[str, Ledger], may_stay_processing: frozenset[str]
) -> list[str]:
    problems: list[str] = []
    status = order["status"]
    attempts: list[dict[str, Any]] = order["attempts"]
    if status == "processing" and order["reason"] not in may_stay_processing:
        problems.append(f"still processing ({order['reason']}), attempts {_outcomes(attempts)}")
    # Failover only ever follows an attempt that certainly charged nothing.
    for attempt in attempts[:-1]:
        if attempt["outcome"] not in NOTHING_KEPT:
            problems.append(f"failed over after {attempt['outcome']}: attempts {_outcomes(attempts)}")
    # A final order whose last attempt is still open was ended without knowing what the supplier did.
    if status in FINAL and attempts and attempts[-1]["outcome"] in OPEN:
        problems.append(f"{status} with an open attempt: attempts {_outcomes(attempts)}")
    delivered: list[tuple[dict[str, Any], LedgerEntry]] = []
    for attempt in attempts:
        ledger = ledgers.get(attempt["supplier"])
        entry = ledger.get(attempt["upstream_order_id"]) if ledger is not None else None
        problems.extend(_audit_attempt(attempt, entry, order["account"]))
        if entry is not None and entry.charged and entry.state in DELIVERING:
            delivered.append((attempt, entry))
    # Charges under this account that none of the order's attempts names.
    named = {(a["supplier"], a["upstream_order_id"]) for a in attempts}
    for name, ledger in ledgers.items():
        for entry in ledger.charges_for(order["account"]):
            if (name, entry.upstream_order_id) not in named:
                problems.append(f"{name} charged {entry.upstream_order_id}, an id the order does not name")
    match status:
        case "succeeded" | "partial":
            expected = ChargeState.SUCCEEDED if status == "succeeded" else ChargeState.PARTIAL
            if [entry.state for _, entry in delivered] != [expected]:
                problems.append(f"{status}, but the ledgers hold {_states(delivered)}")
            elif order["supplier"] != delivered[0][0]["supplier"]:
                problems.append(
                    f"names supplier {order['supplier']}, charged at {delivered[0][0]['supplier']}"
                )
            else:
                entry = delivered[0][1]
                value = entry.delivered_cents
                if status == "succeeded" and entry.face_value_cents is not None:
                    value = entry.face_value_cents * entry.quantity
                if value is not None and order["delivered_value"] != format_money(value):
                    problems.append(
                        f"delivered_value {order['delivered_value']}, ledger {format_money(value)}"
                    )
                # What the gateway shows as the supplier's id and price is what the supplier kept.
                known_id = order["supplier_order_id"]
                if known_id is not None and known_id != entry.supplier_order_id:
                    problems.append(f"supplier_order_id {known_id}, ledger {entry.supplier_order_id}")
                if entry.cost_cents is not None and order["cost"] != format_money(entry.cost_cents):
                    problems.append(f"cost {order['cost']}, ledger {format_money(entry.cost_cents)}")
        case "failed":
            if delivered:
                problems.append(f"failed, but the ledgers hold {_states(delivered)}")
        case "processing":
            if len(delivered) > 1:
                problems.append(f"processing, and the ledgers hold {_states(delivered)}")
        case _:
            problems.append(f"unknown status {status!r}")
    return problems


def _audit_attempt(attempt: dict[str, Any], entry: LedgerEntry | None, account: str) -> list[str]:
    """An attempt's recorded outcome against what its supplier did with that upstream id."""
    outcome, upstream_id = attempt["outcome"], attempt["upstream_order_id"]
    state = entry.state if entry is not None else None
    if entry is not None and entry.account != account:
        return [f"attempt {upstream_id} charged account {entry.account}"]
    match outcome:
        case "succeeded" | "partial":
            if state is not ChargeState(outcome):
                return [f"attempt {upstream_id} is {outcome}, the supplier's ledger says {state}"]
        case "failed" | "not_executed":
            if entry is not None and entry.charged and state is not ChargeState.FAILED:
                return [f"attempt {upstream_id} is {outcome}, the supplier's ledger says {state}"]
        case "processing" | "unknown":
            pass  # only allowed on orders left processing, which is checked by the order's status
        case _:
            return [f"attempt {upstream_id} has unknown outcome {outcome!r}"]
    return []


def _audit_notices(order: dict[str, Any], notices: Sequence[Notice]) -> list[str]:
    if not notices:
        return [f"{order['status']}, but the shop was never notified"]
    problems = []
    if any(n.status != order["status"] for n in notices):
        problems.append(f"{order['status']}, but notified {[n.status for n in notices]}")
    if not all(n.signed for n in notices):
        problems.append("a notification had a bad signature")
    return problems


def _outcomes(attempts: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{a['supplier']}:{a['outcome']}" for a in attempts]


def _states(delivered: Sequence[tuple[dict[str, Any], LedgerEntry]]) -> list[str]:
    return [f"{attempt['supplier']}:{entry.state.value}" for attempt, entry in delivered]


def tally(orders: Mapping[str, dict[str, Any] | None]) -> dict[str, int]:
    """How many orders ended how, for the failure messages and the run's log."""
    counts: dict[str, int] = defaultdict(int)
    for order in orders.values():
        key = "missing" if order is None else f"{order['status']}/{order['reason']}"
        counts[key] += 1
    return dict(sorted(counts.items()))
