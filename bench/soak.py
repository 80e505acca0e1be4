"""The soak: signed orders at a fixed rate through `gateway run` for minutes, its RSS sampled as it goes.

The demo's suppliers, products and knobs (gateway.yaml, or --config) on loopback ports of their
own: the simulated suppliers in one process of their own (`python -m gateway.simulator.serve`), the
gateway in another, the load here. Every SAMPLE_SECONDS it reads VmRSS of both from /proc and prints
a row; at the end, KB per order: the gateway's RSS growth after the warm-up over the orders placed
meanwhile. It stops by itself. Run through `bench/run.py --soak MINUTES --rate N`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import orjson
import yaml

from gateway.auth import WINDOW_SECONDS, request_signature

ROOT: Final = Path(__file__).resolve().parents[1]
PYTHON: Final = sys.executable
# Apart from bench/run.py's ports, so the two can run side by side.
GATEWAY_PORT: Final = 18180
ADMIN_PORT: Final = 18991
FIRST_SUPPLIER_PORT: Final = 19201  # and on, one per supplier
SHOP: Final = "soak"
SHOP_SECRET: Final = b"soak-secret"
SAMPLE_SECONDS: Final = 15.0
MAX_IN_FLIGHT: Final = 2000  # above this the gateway is not keeping up: further orders are skipped
SETTLE_SECONDS: Final = 20.0  # after the last order, for the gateway to finish what it accepted
TICK_SECONDS: Final = 0.01
# An account that fits each product's kind, numbered per order.
ACCOUNTS: Final = {"mobile_cn": "139{:08d}", "qq": "1{:09d}", "game": "player{:08d}", "any": "acct{:08d}"}


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    sent: int
    final: int
    gateway_kib: int
    simulators_kib: int
    gateway_cpu: float


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def configs(base: Path, tmp: Path, store: str) -> tuple[Path, Path, list[int], list[tuple[str, str]]]:
    """From `base`: the simulators' configuration, the gateway's (the same without `simulate:`), the
    simulators' ports, and a (product, account pattern) per product."""
    doc = yaml.safe_load(base.read_text())
    doc["server"] = {
        "listen": f"127.0.0.1:{GATEWAY_PORT}",
        "public_url": f"http://127.0.0.1:{GATEWAY_PORT}",
    }
    doc["admin"] = {"listen": f"127.0.0.1:{ADMIN_PORT}", "token": ""}
    doc["store"] = "memory://" if store == "memory" else f"sqlite:///{tmp}/soak.db"
    doc["log"] = {"level": "warning", "format": "json"}
    doc["shops"] = {
        SHOP: {"secret": SHOP_SECRET.decode(), "products": list(doc["products"]), "notify_hosts": []}
    }
    ports = []
    for i, (name, supplier) in enumerate(doc["suppliers"].items()):
        if "simulate" not in supplier:
            raise SystemExit(
                f"{base}: supplier {name} has no simulate: block; the soak calls no real supplier"
            )
        ports.append(FIRST_SUPPLIER_PORT + i)
        supplier["base_url"] = f"http://127.0.0.1:{ports[-1]}"
    simulators = tmp / "simulators.yaml"
    simulators.write_text(yaml.safe_dump(doc))
    for supplier in doc["suppliers"].values():
        del supplier["simulate"]
    gateway = tmp / "gateway.yaml"
    gateway.write_text(yaml.safe_dump(doc))
    products = [(name, ACCOUNTS[product["account"]]) for name, product in doc["products"].items()]
    return simulators, gateway, ports, products


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    # stderr to a file, never a pipe: minutes of warnings would fill a pipe nobody reads, and stall.
    with log.open("wb") as sink:
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink)


async def wait_port(port: int, proc: subprocess.Popen[bytes], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode} before listening on {port}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def series(session: aiohttp.ClientSession, name: str) -> dict[str, float]:
    """The gateway's samples of metric `name`, by their label text."""
    async with session.get(f"http://127.0.0.1:{ADMIN_PORT}/metrics") as response:
        text = await response.text()
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            found[labels] = float(value)
    return found


async def final_orders(session: aiohttp.ClientSession) -> int:
    return round(sum((await series(session, "gateway_orders_total")).values()))


class Load:
    """Orders at a fixed rate, open loop: each is sent when due, whatever the earlier ones are doing."""

    def __init__(self, session: aiohttp.ClientSession, products: list[tuple[str, str]], rate: float) -> None:
        self._session = session
        self._products = products
        self._rate = rate
        self._tag = secrets.token_hex(4)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.skipped = 0
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []

    async def run(self, seconds: float) -> None:
        started, before = time.monotonic(), self.sent + self.skipped
        while (elapsed := time.monotonic() - started) < seconds:
            due = before + int(elapsed * self._rate) + 1
            while self.sent + self.skipped < due:
                if len(self._tasks) >= MAX_IN_FLIGHT:
                    self.skipped += 1
                    continue
                task = asyncio.create_task(self._order(self.sent))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                self.sent += 1
            await asyncio.sleep(TICK_SECONDS)

    async def drain(self, seconds: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    async def _order(self, i: int) -> None:
        product, account = self._products[i % len(self._products)]
        body = orjson.dumps(
            {
                "order_id": f"S-{self._tag}-{i}",
                "product": product,
                "account": account.format(i % 100_000_000),
                "wait_seconds": 0,
            }
        )
        ts, nonce = str(int(time.time())), f"n{self._tag}{i:010d}"
        headers = {
            "Content-Type": "application/json",
            "X-Shop-Id": SHOP,
            "X-Timestamp": ts,
            "X-Nonce": nonce,
            "X-Signature": request_signature(SHOP_SECRET, "POST", "/v1/orders", ts, nonce, body),
        }
        started = time.perf_counter()
        try:
            async with self._session.post(
                f"http://127.0.0.1:{GATEWAY_PORT}/v1/orders", data=body, headers=headers
            ) as response:
                await response.read()
                self.statuses[str(response.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.statuses[type(exc).__name__] += 1
        self.latencies.append(time.perf_counter() - started)


class Tracer:
    """Asks a gateway run under bench/traced.py for snapshots and reports what grew between two."""

    def __init__(self, pid: int, directory: Path) -> None:
        self._pid = pid
        self._directory = directory
        self.taken = 0

    async def take(self) -> int:
        self.taken += 1
        os.kill(self._pid, signal.SIGUSR1)
        done = self._directory / f"{self.taken}.done"
        async with asyncio.timeout(120):
            while not done.exists():  # another process writes it
                await asyncio.sleep(0.2)
        return self.taken

    def report(self, first: int, last: int, top: int = 15) -> None:
        old = tracemalloc.Snapshot.load(str(self._directory / f"{first}.snap"))
        new = tracemalloc.Snapshot.load(str(self._directory / f"{last}.snap"))
        traced = sum(s.size for s in new.statistics("filename")) - sum(
            s.size for s in old.statistics("filename")
        )
        print(f"\ntracemalloc: Python allocations grew {traced / 1024:.0f} KiB between the snapshots")
        print(f"{'KiB':>9} {'blocks':>8}  where (top {top} by growth)")
        for stat in new.compare_to(old, "lineno")[:top]:
            frame = stat.traceback[0]
            print(
                f"{stat.size_diff / 1024:9.1f} {stat.count_diff:8d}  {_short(frame.filename)}:{frame.lineno}"
            )
        print("\nthe top 5 growers with their callers:")
        for stat in new.compare_to(old, "traceback")[:5]:
            print(f"{stat.size_diff / 1024:9.1f} KiB {stat.count_diff:8d} blocks")
            for frame in list(stat.traceback)[:6]:
                print(f"{'':14}{_short(frame.filename)}:{frame.lineno}")
        before = Counter(json.loads((self._directory / f"{first}.json").read_text()))
        after = Counter(json.loads((self._directory / f"{last}.json").read_text()))
        after.subtract(before)
        print(f"\ngc-tracked objects by type, growth (top {top}):")
        for kind, grown in after.most_common(top):
            if grown > 0:
                print(f"{grown:9d}  {kind}")


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def soak(
    minutes: float, rate: float, store: str, warmup: float | None, trace_frames: int, base: Path
) -> None:
    seconds = minutes * 60
    warmup = min(WINDOW_SECONDS, seconds / 2) if warmup is None else warmup
    if not 0 <= warmup < seconds:
        raise SystemExit("--warmup must be shorter than the soak")
    tmp = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    simulators_yaml, gateway_yaml, ports, products = configs(base, tmp, store)
    gateway_args = ["run", "-c", str(gateway_yaml)]
    traces = tmp / "traces"
    if trace_frames:
        traces.mkdir()
        gateway_cmd = [PYTHON, "bench/traced.py", str(traces), str(trace_frames), "--", *gateway_args]
    else:
        gateway_cmd = [PYTHON, "-m", "gateway", *gateway_args]
    procs = {
        "simulators": spawn(
            [PYTHON, "-m", "gateway.simulator.serve", "-c", str(simulators_yaml)], tmp / "simulators.log"
        ),
        "gateway": spawn(gateway_cmd, tmp / "gateway.log"),
    }
    try:
        for port in ports:
            await wait_port(port, procs["simulators"])
        await wait_port(GATEWAY_PORT, procs["gateway"])
        await wait_port(ADMIN_PORT, procs["gateway"])
        gw_pid, sim_pid = procs["gateway"].pid, procs["simulators"].pid
        tracer = Tracer(gw_pid, traces) if trace_frames else None
        print(
            f"soak: {minutes:g} min at {rate:g} orders/s, {base.name}, store={store}, warm-up {warmup:.0f} s,"
            f" samples every {SAMPLE_SECONDS:.0f} s, cores={os.cpu_count()}, logs in {tmp}"
        )
        print(
            f"{'t s':>6} {'sent':>8} {'final':>8} {'open':>6} {'gw RSS MiB':>10} "
            f"{'gw Δ MiB':>8} {'sims RSS MiB':>12} {'gw CPU %':>8}"
        )
        connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            load = Load(session, products, rate)
            samples: list[Sample] = []
            marks: dict[str, int] = {}

            async def sample(started: float) -> Sample:
                taken = Sample(
                    seconds=time.monotonic() - started,
                    sent=load.sent,
                    final=await final_orders(session),
                    gateway_kib=rss_kib(gw_pid),
                    simulators_kib=rss_kib(sim_pid),
                    gateway_cpu=cpu_seconds(gw_pid),
                )
                previous = samples[-1] if samples else taken
                busy = (taken.gateway_cpu - previous.gateway_cpu) / max(
                    taken.seconds - previous.seconds, 1e-9
                )
                samples.append(taken)
                print(
                    f"{taken.seconds:6.0f} {taken.sent:8d} {taken.final:8d} {taken.sent - taken.final:6d} "
                    f"{taken.gateway_kib / 1024:10.1f} "
                    f"{(taken.gateway_kib - samples[0].gateway_kib) / 1024:8.1f} "
                    f"{taken.simulators_kib / 1024:12.1f} {busy * 100:8.0f}",
                    flush=True,
                )
                return taken

            async def sampler(started: float) -> None:
                for tick in itertools.count():
                    await asyncio.sleep(max(0.0, started + tick * SAMPLE_SECONDS - time.monotonic()))
                    if "warm_sample" not in marks and tick * SAMPLE_SECONDS >= warmup:
                        marks["warm_sample"] = len(samples)
                    await sample(started)

            async def settle() -> None:
                await load.drain(SETTLE_SECONDS)
                deadline = time.monotonic() + SETTLE_SECONDS
                while await final_orders(session) < load.sent and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)

            started = time.monotonic()
            sampling = asyncio.create_task(sampler(started))
            if tracer is None:
                await load.run(seconds)
            else:
                # Snapshots of a gateway at rest, so requests in flight do not count as growth.
                await load.run(warmup)
                await settle()
                marks["warm"] = await tracer.take()
                await load.run(seconds - warmup)
            while samples[-1].seconds < seconds - 1:  # the sample at the end of the load
                await asyncio.sleep(0.2)
            sampling.cancel()
            await settle()
            if tracer is not None:
                marks["end"] = await tracer.take()
            finished = await final_orders(session)
            waiting = {
                labels: count
                for labels, count in (await series(session, "gateway_orders_processing")).items()
                if count
            }

        _summary(samples, marks.get("warm_sample", 0), load, finished, seconds, rate)
        if waiting:
            print("still processing: " + ", ".join(f"{k} x{v:.0f}" for k, v in sorted(waiting.items())))
        if tracer is not None and "warm" in marks:
            tracer.report(marks["warm"], marks["end"])
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode not in (0, -signal.SIGTERM):
                tail = (tmp / f"{name}.log").read_bytes()[-2000:].decode(errors="replace")
                print(f"{name} exited {proc.returncode}: {tail}")


def _summary(
    samples: list[Sample], warm_index: int, load: Load, finished: int, seconds: float, rate: float
) -> None:
    last = samples[-1]
    first = samples[0]
    warm = samples[min(warm_index, len(samples) - 1)]
    print(
        f"\norders sent {load.sent} in {seconds:.0f} s ({load.sent / seconds:.1f}/s of {rate:g}/s asked),"
        f" skipped {load.skipped} (more than {MAX_IN_FLIGHT} in flight), final {finished}"
    )
    print("answers: " + ", ".join(f"{status} x{count}" for status, count in sorted(load.statuses.items())))
    if len(load.latencies) > 1:
        cuts = statistics.quantiles(load.latencies, n=100, method="inclusive")
        print(f"latency: p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms")

    def per_order(key: str, since: Sample) -> str:
        orders = last.sent - since.sent
        grown = getattr(last, key) - getattr(since, key)
        return f"{grown / 1024:+.1f} MiB, {grown / orders:.3f} KB/order" if orders else "no orders"

    print(
        f"gateway RSS: {first.gateway_kib / 1024:.1f} -> {warm.gateway_kib / 1024:.1f} at warm-up"
        f" ({warm.seconds:.0f} s) -> {last.gateway_kib / 1024:.1f} MiB"
    )
    print(f"  after warm-up ({last.sent - warm.sent} orders): {per_order('gateway_kib', warm)}")
    print(f"  whole run ({last.sent} orders): {per_order('gateway_kib', first)}")
    print(
        f"simulators RSS: {first.simulators_kib / 1024:.1f} -> {last.simulators_kib / 1024:.1f} MiB;"
        f" after warm-up {per_order('simulators_kib', warm)}"
    )
    cpu = last.gateway_cpu - first.gateway_cpu
    print(f"gateway CPU: {cpu:.0f} s, {cpu / max(last.sent, 1) * 1e6:.0f} µs/order")
