"""The plumbing every bench mode shares: processes, ports, /proc readings, signed requests and loads.

Nothing here measures on its own: bench/run.py (the table, `--inflight`, `--routing`), bench/soak.py
and bench/modes.py put these together. The servers started are `gateway run`, bench/servers.py's
simulated fulu and bare pass-through proxy, `python -m gateway.simulator.serve` and redis-server,
each with its stderr in a log file of its own (never a pipe: minutes of warnings would fill a pipe
nobody reads, and stall the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import redis.asyncio
import redis.exceptions
import yaml

from adapters.fulu import FuluAdapter
from adapters.interface import AccountKind, AdapterSettings, Charge
from gateway.auth import request_signature

ROOT: Final = Path(__file__).resolve().parents[1]
PYTHON: Final = sys.executable
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
SHOP: Final = "bench"
SHOP_SECRET: Final = b"bench-secret"
FULU_CREDENTIALS: Final = {"app_key": "bench-app-key", "app_secret": "bench-app-secret"}
PRODUCT: Final = "mobile.cmcc.50"
STOP_SECONDS: Final = 30.0
LOOPS: Final = ("uvloop", "asyncio")

# One request ready to send: (path, body, headers); for the open loop, (url, body, headers).
Prepared = tuple[str, bytes, dict[str, str]]


# --- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, since it started."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A KiB figure of /proc/<pid>/status: VmRSS (now) or VmHWM (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def loop_of(pid: int) -> str:
    """Which event loop a process runs on, as far as /proc shows it: uvloop once its library is mapped.

    The gateway picks its loop from GATEWAY_EVENT_LOOP; this checks that it did, so a ratio between
    a gateway on asyncio's loop and a proxy on uvloop is never reported unnoticed.
    """
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "?"
    return "uvloop" if "/uvloop/" in maps else "asyncio"


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def machine_use(before: tuple[int, int], after: tuple[int, int], ours: float) -> tuple[float, float]:
    """(share of all CPUs busy, cores busy with other work than `ours` CPU seconds) between two readings.

    Other people's work on the machine skews every figure here; this says how much there was.
    """
    busy, total = after[0] - before[0], max(after[1] - before[1], 1)
    wall = total / CLK_TCK / (os.cpu_count() or 1)
    return busy / total, max(0.0, busy / CLK_TCK - ours) / max(wall, 1e-9)


def established_to(pid: int, port: int) -> int:
    """TCP connections in state ESTABLISHED to loopback `port`, as /proc/<pid>/net/tcp{,6} lists them.

    The files list the whole network namespace, not the process: count only connections to a port
    that no process but `pid` connects to (a simulated supplier's). The regex runs in C: at 20,000
    sockets a line-by-line parse would take the bench's loop for tens of milliseconds per sample.
    """
    pattern = re.compile(rb"^\s*\d+: [0-9A-F]+:[0-9A-F]{4} [0-9A-F]+:%04X 01 " % port, re.MULTILINE)
    count = 0
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            count += len(pattern.findall(Path(f"/proc/{pid}/net/{name}").read_bytes()))
    return count


class MachineUse:
    """How busy the machine is from now until `done`, and how much of it was others' work than `procs`'
    and this process's (other people's tests on a shared machine skew every figure)."""

    def __init__(self, procs: Processes) -> None:
        self._procs = procs
        self._jiffies = machine_jiffies()
        self._ours = procs.cpu("") + time.process_time()

    def done(self) -> tuple[float, float]:
        """(share of all CPUs busy, cores busy with other work) since the start."""
        ours = self._procs.cpu("") + time.process_time() - self._ours
        return machine_use(self._jiffies, machine_jiffies(), ours)


# --- ports and processes ----------------------------------------------------------------------


def free_port(taken: set[int]) -> int:
    """A free loopback port below the ephemeral range, not given out earlier in this run."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(30000, 32000)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port")


class Processes:
    """The processes of one side or mode, stopped together; each logs to a file of its own in `folder`."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        cpu: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        if cpu is not None:
            args = ["taskset", "-c", str(cpu), *args]  # taskset execs: the pid stays the server's
        with (self.folder / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=log
            )
        self.running[name] = proc
        return proc

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def named(self, prefix: str) -> list[str]:
        return [name for name in self.running if name.startswith(prefix)]

    def log_events(self, name: str) -> Counter[str]:
        """The structured log events (warnings and worse: the bench's gateways log at warning) by name."""
        events: Counter[str] = Counter()
        for line in (self.folder / f"{name}.log").read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                entry = orjson.loads(line)
                events[f"{entry.get('level', '?')} {entry['event']}"] += 1
        return events

    def log_tail(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-1500:]

    async def wait_port(self, name: str, port: int, within: float = 30.0) -> None:
        proc = self.running[name]
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}: {self.log_tail(name)}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{name}: nothing listens on {port}")

    def cpu(self, prefix: str) -> float:
        return sum(cpu_seconds(self.pid(name)) for name in self.named(prefix))

    def peak_rss_kib(self, prefix: str) -> int:
        """The largest VmHWM among the processes named `prefix`*: each process's own peak."""
        return max((status_kib(self.pid(name), "VmHWM") for name in self.named(prefix)), default=0)

    def stop(self, within: float = STOP_SECONDS) -> None:
        """The gateways first (their suppliers and Redis still up while they drain), then the rest, Redis
        last; whatever has not exited `within` seconds of its SIGTERM is killed, and said so."""

        def rank(name: str) -> int:
            return 0 if name.startswith("gateway") else 2 if name.startswith("redis") else 1

        for r in range(3):
            group = [name for name in self.running if rank(name) == r]
            started = time.monotonic()
            for name in group:
                if self.running[name].poll() is None:
                    self.running[name].terminate()
            for name in group:
                proc = self.running[name]
                try:
                    proc.wait(timeout=max(0.0, within - (time.monotonic() - started)))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    print(f"  {name} did not stop within {within:g} s of SIGTERM: killed", file=sys.stderr)
                    continue
                if proc.returncode not in (0, -15):
                    print(f"  {name} exited {proc.returncode}: {self.log_tail(name)}", file=sys.stderr)


# --- the servers ------------------------------------------------------------------------------


def clean_up(folder: Path, *, keep: bool) -> None:
    """Remove a run's folder (configurations, logs, databases), or say where it was kept."""
    if keep:
        print(f"logs and configurations kept in {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def launch_simulator(
    procs: Processes,
    name: str,
    port: int,
    callback_url: str,
    loop: str,
    *,
    latency: float = 0.0,
    result_after: float = 0.05,
    drop_callbacks: bool = False,
    instant: bool = False,
    cpu: int | None = None,
) -> None:
    """A simulated fulu (bench/servers.py): success after `latency`, final `result_after` later.

    `instant`: success in the submit's own reply, no callback (the other knobs do not apply).
    """
    args = [PYTHON, "bench/servers.py", "simulator", "--loop", loop, "--port", str(port)]
    args += ["--callback-url", callback_url, "--latency", str(latency), "--result-after", str(result_after)]
    args += ["--drop-callbacks"] if drop_callbacks else []
    procs.start(name, [*args, "--instant"] if instant else args, cpu=cpu)


def launch_proxy(
    procs: Processes, name: str, port: int, upstream_port: int, loop: str, cpu: int | None
) -> None:
    """bench/servers.py's bare pass-through proxy in front of the simulator on `upstream_port`."""
    procs.start(
        name,
        [PYTHON, "bench/servers.py", "passthrough", "--loop", loop, "--port", str(port),
         "--upstream", f"http://127.0.0.1:{upstream_port}"],
        cpu=cpu,
    )  # fmt: skip


def launch_gateway(
    procs: Processes,
    name: str,
    *,
    port: int,
    admin: int,
    store: str,
    suppliers: Mapping[str, dict[str, Any]],
    offers: Sequence[Mapping[str, Any]],
    loop: str,
    routing: str = "priority",
    orders: Mapping[str, Any] | None = None,
    cpu: int | None = None,
    profile: Path | None = None,
) -> None:
    """`gateway run` with gateway_config's configuration; `profile`: under cProfile, stats to that file."""
    config = gateway_config(
        procs.folder / f"{name}.yaml",
        port=port, admin=admin, store=store, suppliers=suppliers, offers=offers, routing=routing,
        orders=orders,
    )  # fmt: skip
    profiled = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    # The gateway chooses its event loop from GATEWAY_EVENT_LOOP (uvloop unless told `asyncio`).
    procs.start(
        name,
        [PYTHON, *profiled, "-m", "gateway", "run", "-c", str(config)],
        cpu=cpu,
        env={"GATEWAY_EVENT_LOOP": loop},
    )


async def open_store(
    kind: str, procs: Processes, taken: set[int], appendfsync: str
) -> tuple[str, int | None]:
    """The store URL of `kind` (memory, sqlite, redis) and the port of the redis-server started for it."""
    if kind == "memory":
        return "memory://", None
    if kind == "sqlite":
        return f"sqlite:///{procs.folder}/gateway.db", None  # synchronous=FULL: the store's default
    port = free_port(taken)
    return await start_redis(procs, port, appendfsync), port


async def start_redis(procs: Processes, port: int, appendfsync: str, name: str = "redis") -> str:
    """A redis-server of the side's own, AOF on, every write fsynced first with `always`: its store URL."""
    data = procs.folder / name
    data.mkdir(exist_ok=True)
    procs.start(
        name,
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
         "--maxmemory-policy", "noeviction", "--protected-mode", "no"],
    )  # fmt: skip
    await procs.wait_port(name, port)
    # It accepts connections before it has loaded its AOF: until PING answers.
    client = redis.asyncio.Redis(port=port)
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                if await client.ping():
                    break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    return f"redis://127.0.0.1:{port}/0"


async def redis_commands(port: int | None) -> int:
    """How many commands the Redis on `port` has processed (0 without one)."""
    if port is None:
        return 0
    client = redis.asyncio.Redis(port=port)
    try:
        stats = await client.info("stats")
    finally:
        await client.aclose()
    return int(stats["total_commands_processed"])


# --- the gateway's configuration and its admin listener ---------------------------------------


def fulu_supplier(
    simulator_port: int,
    *,
    max_concurrency: int = 10000,
    rate: float = 100000.0,
    burst: int = 1000,
    max_wait: float = 0.25,
    timeout: float = 5.0,
    slow_call: float | None = None,
) -> dict[str, Any]:
    """A supplier entry for a simulated fulu; by default neither its rate limit nor its concurrency binds.

    `slow_call`: the breaker's slow-call mark (default 2 s), for a supplier slow by design.
    """
    breaker = {} if slow_call is None else {"breaker": {"slow_call": f"{slow_call:g}s"}}
    return {
        **breaker,
        "protocol": "fulu",
        "base_url": f"http://127.0.0.1:{simulator_port}",
        "credentials": dict(FULU_CREDENTIALS),
        "timeout": f"{timeout:g}s",
        "rate_limit": {"rate": rate, "per": "1s", "burst": burst, "max_wait": f"{max_wait * 1000:g}ms"},
        "max_concurrency": max_concurrency,
    }


def listen_locally(
    doc: dict[str, Any], *, port: int, admin: int, store: str, shop: str, secret: bytes, products: list[str]
) -> dict[str, Any]:
    """`doc` (a gateway.yaml) on loopback ports, with `store`, quiet logs and one shop selling `products`."""
    doc["server"] = {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"}
    doc["admin"] = {"listen": f"127.0.0.1:{admin}", "token": ""}
    doc["store"] = store
    doc["log"] = {"level": "warning", "format": "json"}
    doc["shops"] = {shop: {"secret": secret.decode(), "products": products, "notify_hosts": []}}
    return doc


def gateway_config(
    path: Path,
    *,
    port: int,
    admin: int,
    store: str,
    suppliers: Mapping[str, dict[str, Any]],
    offers: Sequence[Mapping[str, Any]],
    routing: str = "priority",
    orders: Mapping[str, Any] | None = None,
) -> Path:
    """The demo's order and notify knobs (gateway.yaml), with `suppliers` and one product of `offers`;
    `orders` overrides some of the order knobs."""
    doc = listen_locally(
        yaml.safe_load((ROOT / "gateway.yaml").read_text()),
        port=port, admin=admin, store=store, shop=SHOP, secret=SHOP_SECRET, products=["mobile.*"],
    )  # fmt: skip
    doc["orders"] = {**doc.get("orders", {}), **(orders or {})}
    doc["suppliers"] = dict(suppliers)
    doc["products"] = {
        PRODUCT: {"account": "mobile_cn", "face_value": "50", "routing": routing, "offers": list(offers)}
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


async def metric_series(session: aiohttp.ClientSession, admin: int, name: str) -> dict[str, float]:
    """A gateway's samples of metric `name`, by their label text (`{a="x",b="y"}`)."""
    async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
        text = await response.text()
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            found[labels] = float(value)
    return found


async def final_orders(session: aiohttp.ClientSession, admins: Iterable[int]) -> int:
    """Orders that reached a final status, over every gateway's admin port."""
    total = 0.0
    for admin in admins:
        total += sum((await metric_series(session, admin, "gateway_orders_total")).values())
    return round(total)


async def wait_ready(session: aiohttp.ClientSession, admin: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{admin}/readyz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway with admin port {admin} is not ready after {within:g} s")


async def settle(
    session: aiohttp.ClientSession, admins: Sequence[int], target: int, within: float, poll: float = 0.05
) -> int:
    """Until `target` orders are final on the gateways (at most `within` seconds): how many are."""
    deadline = time.monotonic() + within
    while True:
        finished = await final_orders(session, admins)
        if finished >= target or time.monotonic() > deadline:
            return finished
        await asyncio.sleep(poll)


# --- signed requests --------------------------------------------------------------------------


def shop_headers(body: bytes, *, shop: str, secret: bytes, ts: str, nonce: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shop-Id": shop,
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Signature": request_signature(secret, "POST", "/v1/orders", ts, nonce, body),
    }


def shop_orders(n: int, account: str = "13800138000") -> list[Prepared]:
    """n signed orders (`wait_seconds: 0`), each with an order id and nonce of its own, stamped now.

    The gateway takes a timestamp for 300 s: prepare them just before the part that sends them.
    """
    tag = secrets.token_hex(4)
    ts = str(int(time.time()))
    built = []
    for i in range(n):
        body = orjson.dumps({"order_id": f"B-{tag}-{i}", "product": PRODUCT, "account": account,
                             "wait_seconds": 0})  # fmt: skip
        headers = shop_headers(body, shop=SHOP, secret=SHOP_SECRET, ts=ts, nonce=f"n{tag}{i:010d}")
        built.append(("/v1/orders", body, headers))
    return built


def fulu_requests(n: int) -> list[Prepared]:
    """n fulu submits as the gateway's adapter signs them, each for an order number of its own."""
    adapter = FuluAdapter(
        AdapterSettings(name="bench", base_url="http://127.0.0.1", credentials=dict(FULU_CREDENTIALS))
    )
    prefix = "B" + secrets.token_hex(8).upper()
    built = []
    for i in range(n):
        request = adapter.build_submit(
            Charge(
                upstream_order_id=f"{prefix}{i:08d}",
                sku="18221081",
                account="13800138000",
                account_kind=AccountKind.MOBILE_CN,
                face_value_cents=5000,
                quantity=1,
                max_cost_cents=4930,
                callback_url="http://127.0.0.1:1/",
                timestamp=time.time(),
            )
        )
        path = request.url.split("://", 1)[1].split("/", 1)[1]
        built.append(("/" + path, request.body, dict(request.headers)))
    return built


# --- loads ------------------------------------------------------------------------------------


def answer(status: int, body: bytes) -> str:
    """An answer as counted: its status, with the gateway's error code when it is an error."""
    if status < 300:
        return str(status)
    try:
        return f"{status} {orjson.loads(body)['error']['code']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return str(status)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class LoadResult:
    """What a closed-loop load saw: completed requests, of which refused (status >= 400, socket errors)."""

    requests: int
    seconds: float
    errors: int
    p50: float
    p99: float
    cpu: float  # the load generator's own CPU seconds
    wraps: int = 0  # times the prepared requests ran out and were sent again


WRK_SCRIPT: Final = r"""
-- Each request of the file (one per line: path, body, then header name/value pairs, tab-separated)
-- is sent once; done() prints a JSON summary line.
local prepared, next_index, wraps = {}, 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local fields = {}
    for value in string.gmatch(line, "[^\t]+") do fields[#fields + 1] = value end
    local headers = {}
    for k = 3, #fields - 1, 2 do headers[fields[k]] = fields[k + 1] end
    prepared[#prepared + 1] = wrk.format("POST", fields[1], headers, fields[2])
  end
end

function request()
  next_index = next_index + 1
  if next_index > #prepared then
    next_index, wraps = 1, wraps + 1
  end
  return prepared[next_index]
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do wrapped = wrapped + (thread:get("wraps") or 0) end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "wraps": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), wrapped))
end
"""


def write_requests(path: Path, requests: Sequence[Prepared]) -> None:
    """The requests as wrk's script reads them: one per line, tab-separated."""
    with path.open("w") as out:
        for url_path, body, headers in requests:
            fields = [url_path, body.decode(), *itertools.chain.from_iterable(headers.items())]
            assert all("\t" not in f and "\n" not in f for f in fields)
            out.write("\t".join(fields) + "\n")


async def wrk_load(
    port: int, connections: int, seconds: float, requests_file: Path, script: Path
) -> LoadResult:
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script),
        f"http://127.0.0.1:{port}", "--", str(requests_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    started = cpu_seconds(proc.pid)
    cpu = started
    while proc.returncode is None:
        try:
            cpu = cpu_seconds(proc.pid)  # the last reading before it exits
        except (FileNotFoundError, ProcessLookupError):
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
    out, err = await proc.communicate()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out.decode()[-800:]} {err.decode()[-800:]}")
    summary = json.loads(lines[-1])
    return LoadResult(
        requests=summary["requests"],
        seconds=summary["duration_us"] / 1e6,
        errors=summary["status_errors"] + summary["socket_errors"],
        p50=summary["p50_us"] / 1e6,
        p99=summary["p99_us"] / 1e6,
        cpu=cpu - started,
        wraps=summary["wraps"],
    )


async def python_load(
    port: int, connections: int, seconds: float, requests: Sequence[Prepared]
) -> LoadResult:
    """The same as wrk_load, from this process (slower: the load itself then takes a core's share)."""
    latencies: list[float] = []
    errors = 0
    prepared = iter(requests)
    cpu0 = time.process_time()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            nonlocal errors
            for url_path, body, headers in prepared:
                if time.monotonic() >= deadline:
                    return
                started = time.perf_counter()
                try:
                    async with session.post(
                        f"http://127.0.0.1:{port}{url_path}", data=body, headers=headers
                    ) as r:
                        await r.read()
                        errors += r.status >= 400
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        p50=percentile(latencies, 50),
        p99=percentile(latencies, 99),
        cpu=time.process_time() - cpu0,
    )


class OpenLoop:
    """Requests at a fixed rate, open loop: each is sent when due, whatever the earlier ones are doing.

    `make(i)` gives the i-th request as (url, body, headers). Each request is due at its own moment
    (not in batches per tick), so the target sees them evenly spaced as a paced load should be.
    Above `max_in_flight` unanswered the target is not keeping up: further requests are skipped.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        make: Callable[[int], Prepared],
        rate: float,
        max_in_flight: int = 2000,
    ) -> None:
        self._session = session
        self._make = make
        self._rate = rate
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.skipped = 0
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []

    @property
    def errors(self) -> int:
        """Answers other than 2xx, and requests that got no answer."""
        return sum(count for status, count in self.statuses.items() if not status.startswith("2"))

    async def run(self, seconds: float) -> None:
        started, before = time.monotonic(), self.sent + self.skipped
        for k in itertools.count():
            due = started + k / self._rate
            if due - started >= seconds:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(self._tasks) >= self._max_in_flight:
                self.skipped += 1
                continue
            task = asyncio.create_task(self._send(self._make(before + k)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.sent += 1

    async def drain(self, seconds: float) -> None:
        """Until every request sent has its answer (at most `seconds`)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    async def _send(self, request: Prepared) -> None:
        url, body, headers = request
        started = time.perf_counter()
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                self.statuses[answer(response.status, await response.read())] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.statuses[type(exc).__name__] += 1
        self.latencies.append(time.perf_counter() - started)


def run_on(loop: str, main: Any) -> Any:
    """Run coroutine `main` on the named event loop (the bench's own process, like its servers)."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
