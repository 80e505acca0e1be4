"""Scaling on Redis: one and two `gateway run` instances on Redis against one on SQLite and a bare proxy.

In one run, each side started afresh per round, on loopback, with wrk as the load (Python's when wrk
is missing): the bare aiohttp pass-through proxy (bench/servers.py) in front of a simulated fulu; one
gateway on SQLite; one gateway on Redis; two gateways sharing one Redis. Every Redis side gets a
redis-server of its own on a free port (AOF on, `appendfsync always` unless told otherwise). Each
gateway instance has a simulated fulu of its own that calls back to it; the load is split evenly over
the instances (no load balancer). With taskset and 2+ cores, the single instances and the proxy run
on CPU 0, the second instance on CPU 1; Redis, the simulators and the load run unpinned. Usage:

    .venv/bin/python bench/instances.py [--seconds 10] [--rounds 3] [--connections 32]
                                        [--appendfsync always|everysec] [--load wrk|python]

Orders/s counts an order once it is final: accepted orders over the load time plus the time the
gateway took to finish them. CPU per order is read from /proc for each process alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp
import orjson
import redis.asyncio
import redis.exceptions
import yaml
from run import SHOP_SECRET, cpu_seconds, fulu_requests  # bench/ is on the path: it runs as a script

from gateway.auth import request_signature

ROOT: Final = Path(__file__).resolve().parents[1]
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PYTHON: Final = sys.executable
SIDES: Final = ("proxy", "sqlite x1", "redis x1", "redis x2")
WARMUP_SECONDS: Final = 2.0
SETTLE_SECONDS: Final = 60.0
STOP_SECONDS: Final = 30.0
# Requests prepared per load process and second of load: more than any side here can take, so no
# nonce or order id is ever sent twice (a wrap-around is reported).
PREPARED_PER_SECOND: Final = {"proxy": 6000, "gateway": 3000}
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


@dataclass
class LoadResult:
    """What one load process saw: completed requests, of which refused (status >= 400 or socket errors)."""

    requests: int
    seconds: float
    errors: int
    p50: float
    p99: float
    cpu: float
    wraps: int = 0


@dataclass
class SideResult:
    side: str
    rate: float  # orders (or proxied requests) per second, counted when final
    accepted: int
    errors: int
    p50: float
    p99: float
    load_seconds: float
    settle_seconds: float
    cpu_us: dict[str, float] = field(default_factory=dict)  # per order, by process kind
    machine_busy: float = 0.0  # share of all CPUs busy during the side, whoever used them
    others: float = 0.0  # cores used meanwhile by processes not of this bench (other work on the machine)
    redis_commands: float = 0.0  # commands Redis processed per order
    wraps: int = 0


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


async def wait_redis(port: int, within: float = 20.0) -> None:
    """Until Redis answers PING: it accepts connections before it has loaded its AOF."""
    client = redis.asyncio.Redis(port=port)
    deadline = time.monotonic() + within
    try:
        while True:
            try:
                if await client.ping():
                    return
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


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


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def machine_use(before: tuple[int, int], after: tuple[int, int], ours: float) -> tuple[float, float]:
    """(share of all CPUs busy, cores busy with other work than `ours` CPU seconds) between two readings."""
    busy, total = after[0] - before[0], max(after[1] - before[1], 1)
    wall = total / CLK_TCK / (os.cpu_count() or 1)
    return busy / total, max(0.0, busy / CLK_TCK - ours) / max(wall, 1e-9)


class Processes:
    """The processes of one side, stopped together; each logs to a file of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: Sequence[str], cpu: int | None = None) -> subprocess.Popen[bytes]:
        if cpu is not None:
            args = ["taskset", "-c", str(cpu), *args]
        with (self.folder / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        self.running[name] = proc
        return proc

    def log_tail(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-1500:]

    async def wait_port(self, name: str, port: int, within: float = 20.0) -> None:
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
        return sum(cpu_seconds(p.pid) for n, p in self.running.items() if n.startswith(prefix))

    def stop(self, within: float = STOP_SECONDS) -> None:
        """The gateways first (their suppliers and Redis still up while they drain), then the rest, Redis
        last; whatever has not exited `within` seconds of its SIGTERM is killed, and said so."""

        def rank(name: str) -> int:
            return 0 if name.startswith("gateway") else 2 if name.startswith("redis") else 1

        groups = [[name for name in self.running if rank(name) == r] for r in range(3)]
        for group in groups:
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


@dataclass(frozen=True)
class Instance:
    port: int
    admin: int
    simulator: int


def gateway_config(folder: Path, index: int, instance: Instance, store: str) -> Path:
    doc = yaml.safe_load((ROOT / "gateway.yaml").read_text())
    doc["server"] = {
        "listen": f"127.0.0.1:{instance.port}",
        "public_url": f"http://127.0.0.1:{instance.port}",
    }
    doc["admin"] = {"listen": f"127.0.0.1:{instance.admin}", "token": ""}
    doc["store"] = store
    doc["log"] = {"level": "warning", "format": "json"}
    doc["shops"] = {"bench": {"secret": SHOP_SECRET.decode(), "products": ["mobile.*"], "notify_hosts": []}}
    doc["suppliers"] = {
        "fulu": {
            "protocol": "fulu",
            "base_url": f"http://127.0.0.1:{instance.simulator}",
            "credentials": {"app_key": "bench-app-key", "app_secret": "bench-app-secret"},
            "timeout": "5s",
            "rate_limit": {"rate": 100000, "per": "1s", "burst": 1000},
            "max_concurrency": 10000,
        }
    }
    doc["products"] = {
        "mobile.cmcc.50": {
            "account": "mobile_cn",
            "face_value": "50",
            "offers": [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}],
        }
    }
    path = folder / f"gateway-{index}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def shop_orders(n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """n signed orders, each with its own order id and nonce, stamped now (valid for 300 s)."""
    tag = secrets.token_hex(4)
    ts = str(int(time.time()))
    built = []
    for i in range(n):
        body = orjson.dumps(
            {
                "order_id": f"I-{tag}-{i}",
                "product": "mobile.cmcc.50",
                "account": "13800138000",
                "wait_seconds": 0,
            }
        )
        nonce = f"n{tag}{i:010d}"
        headers = {
            "Content-Type": "application/json",
            "X-Shop-Id": "bench",
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": request_signature(SHOP_SECRET, "POST", "/v1/orders", ts, nonce, body),
        }
        built.append(("/v1/orders", body, headers))
    return built


def write_requests(path: Path, requests: list[tuple[str, bytes, dict[str, str]]]) -> None:
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
    port: int, connections: int, seconds: float, requests: list[tuple[str, bytes, dict[str, str]]]
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
    ordered = sorted(latencies) or [0.0]
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        p50=ordered[len(ordered) // 2],
        p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        cpu=time.process_time() - cpu0,
    )


async def final_orders(session: aiohttp.ClientSession, instances: Sequence[Instance]) -> float:
    total = 0.0
    for instance in instances:
        async with session.get(f"http://127.0.0.1:{instance.admin}/metrics") as response:
            text = await response.text()
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gateway_orders_total{")
        )
    return total


async def wait_ready(session: aiohttp.ClientSession, instance: Instance, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            async with session.get(f"http://127.0.0.1:{instance.admin}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"gateway on {instance.port} not ready")


@dataclass
class Bench:
    seconds: float
    connections: int
    appendfsync: str
    use_wrk: bool
    pin: bool
    folder: Path
    profile: Path | None = None
    ports: set[int] = field(default_factory=set)

    def cpu_for(self, index: int) -> int | None:
        return index if self.pin else None

    async def load(self, kind: str, ports: Sequence[int], seconds: float, tag: str) -> list[LoadResult]:
        """Load every port at once, the connections split evenly; a fresh request set per port."""
        each = max(1, self.connections // len(ports))
        prepared_count = int(PREPARED_PER_SECOND[kind] * (seconds + 1))
        batches = [
            fulu_requests(prepared_count) if kind == "proxy" else shop_orders(prepared_count) for _ in ports
        ]
        if not self.use_wrk:
            return list(
                await asyncio.gather(
                    *(
                        python_load(port, each, seconds, batch)
                        for port, batch in zip(ports, batches, strict=True)
                    )
                )
            )
        script = self.folder / "orders.lua"
        script.write_text(WRK_SCRIPT)
        files = []
        for i, batch in enumerate(batches):
            files.append(self.folder / f"{tag}-{i}.tsv")
            write_requests(files[-1], batch)
        results = await asyncio.gather(
            *(wrk_load(port, each, seconds, file, script) for port, file in zip(ports, files, strict=True))
        )
        for file in files:
            file.unlink()
        return list(results)

    async def proxy_side(self) -> SideResult:
        procs = Processes(self.folder)
        sim, proxy = free_port(self.ports), free_port(self.ports)
        try:
            procs.start(
                "simulator",
                [PYTHON, "bench/servers.py", "simulator", "--port", str(sim),
                 "--callback-url", "http://127.0.0.1:1/", "--drop-callbacks"],
            )  # fmt: skip
            procs.start(
                "proxy",
                [PYTHON, "bench/servers.py", "passthrough", "--port", str(proxy),
                 "--upstream", f"http://127.0.0.1:{sim}"],
                cpu=self.cpu_for(0),
            )  # fmt: skip
            await procs.wait_port("simulator", sim)
            await procs.wait_port("proxy", proxy)
            await self.load("proxy", [proxy], WARMUP_SECONDS, "warm")
            cpu0, sim0, busy0 = procs.cpu("proxy"), procs.cpu("simulator"), machine_jiffies()
            own0 = time.process_time()
            (result,) = await self.load("proxy", [proxy], self.seconds, "proxy")
            busy1 = machine_jiffies()
            proxy_cpu, sim_cpu = procs.cpu("proxy") - cpu0, procs.cpu("simulator") - sim0
            busy, others = machine_use(
                busy0, busy1, proxy_cpu + sim_cpu + result.cpu + time.process_time() - own0
            )
            done = result.requests - result.errors
            return SideResult(
                side="proxy",
                rate=done / result.seconds,
                accepted=done,
                errors=result.errors,
                p50=result.p50,
                p99=result.p99,
                load_seconds=result.seconds,
                settle_seconds=0.0,
                cpu_us={
                    "gateway": proxy_cpu / max(done, 1) * 1e6,
                    "simulator": sim_cpu / max(done, 1) * 1e6,
                    "load": result.cpu / max(done, 1) * 1e6,
                },
                machine_busy=busy,
                others=others,
                wraps=result.wraps,
            )
        finally:
            procs.stop()

    async def gateway_side(self, side: str, store_kind: str, count: int) -> SideResult:
        procs = Processes(self.folder / side.replace(" ", ""))
        procs.folder.mkdir(exist_ok=True)
        instances = [
            Instance(free_port(self.ports), free_port(self.ports), free_port(self.ports))
            for _ in range(count)
        ]
        redis_port = None
        try:
            if store_kind == "redis":
                redis_port = free_port(self.ports)
                data = procs.folder / "redis"
                data.mkdir(exist_ok=True)
                procs.start(
                    "redis",
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(data),
                     "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
                     "--maxmemory-policy", "noeviction", "--protected-mode", "no"],
                )  # fmt: skip
                await procs.wait_port("redis", redis_port)
                await wait_redis(redis_port)
                store = f"redis://127.0.0.1:{redis_port}/0"
            else:
                store = f"sqlite:///{procs.folder}/gateway.db"
            for i, instance in enumerate(instances):
                procs.start(
                    f"simulator-{i}",
                    [PYTHON, "bench/servers.py", "simulator", "--port", str(instance.simulator),
                     "--callback-url", f"http://127.0.0.1:{instance.port}/callbacks/fulu"],
                )  # fmt: skip
                config = gateway_config(procs.folder, i, instance, store)
                profiled = []
                if self.profile is not None:
                    stats = self.profile / f"{side.replace(' ', '')}-{i}-{secrets.token_hex(2)}.prof"
                    profiled = ["-m", "cProfile", "-o", str(stats)]
                procs.start(
                    f"gateway-{i}",
                    [PYTHON, *profiled, "-m", "gateway", "run", "-c", str(config)],
                    cpu=self.cpu_for(i),
                )
            async with aiohttp.ClientSession() as session:
                for i, instance in enumerate(instances):
                    await procs.wait_port(f"simulator-{i}", instance.simulator)
                    await procs.wait_port(f"gateway-{i}", instance.port)
                    await wait_ready(session, instance)
                ports = [instance.port for instance in instances]
                warm = await self.load("gateway", ports, WARMUP_SECONDS, "warm")
                await self.settle(session, instances, sum(r.requests - r.errors for r in warm), 0.0)

                before = await final_orders(session, instances)
                cpu0 = {kind: procs.cpu(kind) for kind in ("gateway", "redis", "simulator")}
                commands0 = await redis_commands(redis_port)
                busy0, own0 = machine_jiffies(), time.process_time()
                started = time.monotonic()
                results = await self.load("gateway", ports, self.seconds, side.replace(" ", ""))
                load_seconds = time.monotonic() - started
                accepted = sum(r.requests - r.errors for r in results)
                finished = await self.settle(session, instances, accepted, before)
                total_seconds = time.monotonic() - started
                busy1 = machine_jiffies()
                commands = await redis_commands(redis_port) - commands0
                cpu = {kind: procs.cpu(kind) - cpu0[kind] for kind in cpu0}
                ours = sum(cpu.values()) + sum(r.cpu for r in results) + time.process_time() - own0
                busy, others = machine_use(busy0, busy1, ours)
            if finished < accepted:
                print(f"  {side}: only {finished:.0f} of {accepted} accepted orders final", file=sys.stderr)
            per_order = 1e6 / max(accepted, 1)
            return SideResult(
                side=side,
                rate=finished / total_seconds,
                accepted=accepted,
                errors=sum(r.errors for r in results),
                p50=max(r.p50 for r in results),
                p99=max(r.p99 for r in results),
                load_seconds=load_seconds,
                settle_seconds=total_seconds - load_seconds,
                cpu_us={
                    "gateway": cpu["gateway"] * per_order,
                    "redis": cpu["redis"] * per_order,
                    "simulator": cpu["simulator"] * per_order,
                    "load": sum(r.cpu for r in results) * per_order,
                },
                machine_busy=busy,
                others=others,
                redis_commands=commands / max(accepted, 1),
                wraps=sum(r.wraps for r in results),
            )
        finally:
            procs.stop()

    async def settle(
        self, session: aiohttp.ClientSession, instances: Sequence[Instance], accepted: int, before: float
    ) -> float:
        """Wait until `accepted` more orders than `before` are final (at most SETTLE_SECONDS): how many."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            finished = await final_orders(session, instances) - before
            if finished >= accepted or time.monotonic() > deadline:
                return finished
            await asyncio.sleep(0.05)

    async def side(self, name: str) -> SideResult:
        match name:
            case "proxy":
                return await self.proxy_side()
            case "sqlite x1":
                return await self.gateway_side(name, "sqlite", 1)
            case "redis x1":
                return await self.gateway_side(name, "redis", 1)
            case _:
                return await self.gateway_side(name, "redis", 2)


def median_result(results: list[SideResult]) -> SideResult:
    """The round with the median rate (so its latencies and CPU are of the same round)."""
    return sorted(results, key=lambda r: r.rate)[len(results) // 2]


def report(results: dict[str, list[SideResult]]) -> None:
    print()
    header = (
        f"{'side':<10} {'orders/s':>9} {'rounds':>17} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'gw µs/o':>8} {'redis µs/o':>10} {'sim µs/o':>8} {'load µs/o':>9} {'cmds/o':>6} {'busy':>5} "
        f"{'others':>6} {'errors':>6}"
    )
    print(header)
    medians = {}
    for side, runs in results.items():
        m = median_result(runs)
        medians[side] = statistics.median(r.rate for r in runs)
        spread = "/".join(f"{r.rate:.0f}" for r in runs)
        on_redis = side.startswith("redis")
        redis_cpu = f"{m.cpu_us['redis']:10.0f}" if on_redis else f"{'-':>10}"
        commands = f"{m.redis_commands:6.1f}" if on_redis else f"{'-':>6}"
        print(
            f"{side:<10} {medians[side]:9.0f} {spread:>17} {m.p50 * 1e3:7.2f} {m.p99 * 1e3:7.2f} "
            f"{m.cpu_us['gateway']:8.0f} {redis_cpu} {m.cpu_us['simulator']:8.0f} {m.cpu_us['load']:9.0f} "
            f"{commands} {m.machine_busy:5.0%} {m.others:6.2f} {sum(r.errors for r in runs):6d}"
        )
        settle = max(r.settle_seconds for r in runs)
        if settle > 1.0:
            print(f"{'':<10} (up to {settle:.1f} s after the load to finish the accepted orders)")
        if any(r.wraps for r in runs):
            print(
                f"{'':<10} (warning: prepared requests ran out and were re-sent; raise PREPARED_PER_SECOND)"
            )
    print()
    if {"redis x1", "redis x2"} <= set(medians):
        ratio = medians["redis x2"] / medians["redis x1"]
        print(f"scaling, 2 Redis instances / 1 Redis instance: {ratio:.2f}x")
    for side in ("sqlite x1", "redis x1", "redis x2"):
        versus = [
            f"vs {base}: {medians[side] / medians[base]:.2f}x"
            for base in ("sqlite x1", "proxy")
            if side in medians and base in medians and base != side
        ]
        if versus:
            print(f"{side:<10} " + "   ".join(versus))
    print()
    print(
        "gw µs/o: CPU per order of the gateway process(es) (submit, callback, store; for proxy: the proxy's "
        "per request); redis, sim, load: the same for redis-server, the simulated suppliers and the load "
        "generator; cmds/o: Redis commands per order (a script call counts once). busy: share of the "
        "machine's CPUs in use during the side, by anything; others: cores "
        "used meanwhile by processes outside this bench."
    )


async def main_async(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    pin = shutil.which("taskset") is not None and cores >= 2 and not args.no_pin
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server on PATH")
    folder = Path(tempfile.mkdtemp(prefix="gateway-instances-"))
    bench = Bench(args.seconds, args.connections, args.appendfsync, use_wrk, pin, folder, args.profile)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(
        f"cores={cores} seconds={args.seconds:g} rounds={args.rounds} connections={args.connections} "
        f"load={'wrk' if use_wrk else 'python'} redis appendfsync={args.appendfsync} "
        f"sqlite synchronous=FULL; load average {os.getloadavg()[0]:.2f}"
    )
    if pin:
        print(
            "pinned with taskset: the proxy and gateway instance 1 on CPU 0, instance 2 on CPU 1; "
            "redis-server, the simulators and the load unpinned, sharing "
            f"{'both cores' if cores == 2 else f'all {cores} cores'} with them"
        )
    else:
        print("not pinned (no taskset, one core, or --no-pin)")
    if cores <= 2:
        print(
            f"note: only {cores} cores, so 2 instances compete with redis-server, the simulators and the "
            "load for the same CPUs: the scaling ratio here is a floor, not what 2 hosts would give"
        )
    sides = [side for side in SIDES if not args.only or side in args.only]
    results: dict[str, list[SideResult]] = {side: [] for side in sides}
    try:
        for round_number in range(1, args.rounds + 1):
            for side in sides:
                result = await bench.side(side)
                results[side].append(result)
                print(
                    f"round {round_number} {side:<10} {result.rate:7.0f}/s  accepted {result.accepted} "
                    f"in {result.load_seconds:.1f}+{result.settle_seconds:.1f} s, errors {result.errors}",
                    flush=True,
                )
        report(results)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="load per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--connections", type=int, default=32, help="in total, split over the instances")
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default="always")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the gateways to cores")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="run the gateways under cProfile, stats to DIR/*.prof"
    )
    parser.add_argument("--only", choices=SIDES, action="append", help="run only this side (repeatable)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
