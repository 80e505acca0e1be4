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
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import orjson
import yaml
from processes import (  # bench/ is on the path: it runs as a script
    PYTHON,
    ROOT,
    OpenLoop,
    Prepared,
    Processes,
    cpu_seconds,
    final_orders,
    listen_locally,
    metric_series,
    rss_kib,
    shop_headers,
)

from gateway.auth import WINDOW_SECONDS

# Apart from bench/run.py's ports, so the two can run side by side.
GATEWAY_PORT: Final = 18180
ADMIN_PORT: Final = 18991
FIRST_SUPPLIER_PORT: Final = 19201  # and on, one per supplier
SHOP: Final = "soak"
SHOP_SECRET: Final = b"soak-secret"
SAMPLE_SECONDS: Final = 15.0
MAX_IN_FLIGHT: Final = 2000  # above this the gateway is not keeping up: further orders are skipped
SETTLE_SECONDS: Final = 20.0  # after the last order, for the gateway to finish what it accepted
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


def configs(base: Path, tmp: Path, store: str) -> tuple[Path, Path, list[int], list[tuple[str, str]]]:
    """From `base`: the simulators' configuration, the gateway's (the same without `simulate:`), the
    simulators' ports, and a (product, account pattern) per product."""
    doc = yaml.safe_load(base.read_text())
    listen_locally(
        doc,
        port=GATEWAY_PORT,
        admin=ADMIN_PORT,
        store="memory://" if store == "memory" else f"sqlite:///{tmp}/soak.db",
        shop=SHOP,
        secret=SHOP_SECRET,
        products=list(doc["products"]),
    )
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


def signed_orders(products: list[tuple[str, str]]) -> Callable[[int], Prepared]:
    """The i-th order, signed when it is sent: a soak outlasts the 300 s a timestamp is valid for."""
    tag = secrets.token_hex(4)

    def order(i: int) -> Prepared:
        product, account = products[i % len(products)]
        body = orjson.dumps(
            {
                "order_id": f"S-{tag}-{i}",
                "product": product,
                "account": account.format(i % 100_000_000),
                "wait_seconds": 0,
            }
        )
        headers = shop_headers(
            body, shop=SHOP, secret=SHOP_SECRET, ts=str(int(time.time())), nonce=f"n{tag}{i:010d}"
        )
        return f"http://127.0.0.1:{GATEWAY_PORT}/v1/orders", body, headers

    return order


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
    procs = Processes(tmp)
    procs.start("simulators", [PYTHON, "-m", "gateway.simulator.serve", "-c", str(simulators_yaml)])
    procs.start("gateway", gateway_cmd)
    try:
        for port in ports:
            await procs.wait_port("simulators", port)
        await procs.wait_port("gateway", GATEWAY_PORT)
        await procs.wait_port("gateway", ADMIN_PORT)
        gw_pid, sim_pid = procs.pid("gateway"), procs.pid("simulators")
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
            load = OpenLoop(session, signed_orders(products), rate, max_in_flight=MAX_IN_FLIGHT)
            samples: list[Sample] = []
            marks: dict[str, int] = {}

            async def sample(started: float) -> Sample:
                taken = Sample(
                    seconds=time.monotonic() - started,
                    sent=load.sent,
                    final=await final_orders(session, [ADMIN_PORT]),
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
                while await final_orders(session, [ADMIN_PORT]) < load.sent and time.monotonic() < deadline:
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
            finished = await final_orders(session, [ADMIN_PORT])
            processing = await metric_series(session, ADMIN_PORT, "gateway_orders_processing")
            waiting = {labels: count for labels, count in processing.items() if count}

        _summary(samples, marks.get("warm_sample", 0), load, finished, seconds, rate)
        if waiting:
            print("still processing: " + ", ".join(f"{k} x{v:.0f}" for k, v in sorted(waiting.items())))
        if tracer is not None and "warm" in marks:
            tracer.report(marks["warm"], marks["end"])
    finally:
        procs.stop(within=15)


def _summary(
    samples: list[Sample], warm_index: int, load: OpenLoop, finished: int, seconds: float, rate: float
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
