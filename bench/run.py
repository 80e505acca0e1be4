"""The benchmark: orders/s, added latency and CPU per order of the gateway, in one run against two baselines.

1. direct: fulu submits straight to a simulated supplier;
2. passthrough: the same submits through a bare aiohttp proxy (the cost floor of any proxy);
3. gateway: signed shop orders through `gateway run` (SQLite or memory store), callbacks included.

CPU per order is read from /proc for the proxy and gateway processes alone, so the load generator
and the simulator do not count. Loopback only; bounded in orders and time. Usage:

    .venv/bin/python bench/run.py [--orders 3000] [--concurrency 32] [--store sqlite|memory]

With `--soak MINUTES --rate N` it runs the soak instead (bench/soak.py): orders at N/s for MINUTES
through the demo configuration, the gateway's RSS sampled every 15 s, and KB per order after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import yaml

from adapters.fulu import FuluAdapter
from adapters.interface import AccountKind, AdapterSettings, Charge
from gateway.auth import request_signature

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PORTS = {"gateway": 18080, "admin": 18901, "sim_gateway": 19101, "sim_direct": 19102, "passthrough": 18081}
SHOP_SECRET = b"bench-secret"
UNLOADED = 300


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def wait_port(port: int, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def load(
    n: int, concurrency: int, send: Callable[[aiohttp.ClientSession, int], Awaitable[int]]
) -> tuple[float, list[float], int]:
    """Send n requests with at most `concurrency` in flight: (seconds, latencies, failures)."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for i in counter:
                started = time.perf_counter()
                status = await send(session, i)
                latencies.append(time.perf_counter() - started)
                failures += status >= 300

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, failures


def fulu_requests(n: int) -> list[tuple[str, bytes, dict[str, str]]]:
    adapter = FuluAdapter(
        AdapterSettings(
            name="bench",
            base_url="http://127.0.0.1",
            credentials={"app_key": "bench-app-key", "app_secret": "bench-app-secret"},
        )
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


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]
    )


def bench_config(store: str, tmp: Path) -> Path:
    doc = yaml.safe_load((ROOT / "gateway.yaml").read_text())
    doc["server"] = {
        "listen": f"127.0.0.1:{PORTS['gateway']}",
        "public_url": f"http://127.0.0.1:{PORTS['gateway']}",
    }
    doc["admin"] = {"listen": f"127.0.0.1:{PORTS['admin']}", "token": ""}
    doc["store"] = "memory://" if store == "memory" else f"sqlite:///{tmp}/bench.db"
    doc["log"] = {"level": "warning", "format": "json"}
    doc["shops"] = {"bench": {"secret": SHOP_SECRET.decode(), "products": ["mobile.*"], "notify_hosts": []}}
    doc["suppliers"] = {
        "fulu": {
            "protocol": "fulu",
            "base_url": f"http://127.0.0.1:{PORTS['sim_gateway']}",
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
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def final_orders(session: aiohttp.ClientSession) -> float:
    async with session.get(f"http://127.0.0.1:{PORTS['admin']}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_orders_total{")
    )


async def run(orders: int, concurrency: int, store: str, profile: str | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    callbacks_to = f"http://127.0.0.1:{PORTS['gateway']}/callbacks/fulu"
    procs = {
        "sim_direct": spawn(
            [
                PYTHON,
                "bench/servers.py",
                "simulator",
                "--port",
                str(PORTS["sim_direct"]),
                "--callback-url",
                "http://127.0.0.1:1/",
                "--drop-callbacks",
            ]
        ),
        "sim_gateway": spawn(
            [
                PYTHON,
                "bench/servers.py",
                "simulator",
                "--port",
                str(PORTS["sim_gateway"]),
                "--callback-url",
                callbacks_to,
            ]
        ),
        "passthrough": spawn(
            [
                PYTHON,
                "bench/servers.py",
                "passthrough",
                "--port",
                str(PORTS["passthrough"]),
                "--upstream",
                f"http://127.0.0.1:{PORTS['sim_direct']}",
            ]
        ),
        "gateway": spawn(
            [
                PYTHON,
                *(["-m", "cProfile", "-o", profile] if profile else []),
                "-m",
                "gateway",
                "run",
                "-c",
                str(bench_config(store, tmp)),
            ]
        ),
    }
    try:
        for name in ("sim_direct", "sim_gateway", "passthrough", "gateway"):
            await wait_port(PORTS[name])
        requests = fulu_requests(2 * orders + 400 + UNLOADED)

        def direct_to(port: int, offset: int) -> Callable[[aiohttp.ClientSession, int], Awaitable[int]]:
            async def send(session: aiohttp.ClientSession, i: int) -> int:
                path, body, headers = requests[offset + i]
                async with session.post(f"http://127.0.0.1:{port}{path}", data=body, headers=headers) as r:
                    await r.read()
                    return r.status

            return send

        tag = secrets.token_hex(4)

        async def shop_order(session: aiohttp.ClientSession, i: int) -> int:
            body = orjson.dumps(
                {
                    "order_id": f"B-{tag}-{i}",
                    "product": "mobile.cmcc.50",
                    "account": "13800138000",
                    "wait_seconds": 0,
                }
            )
            ts, nonce = str(int(time.time())), f"n{tag}{i:010d}"
            headers = {
                "Content-Type": "application/json",
                "X-Shop-Id": "bench",
                "X-Timestamp": ts,
                "X-Nonce": nonce,
                "X-Signature": request_signature(SHOP_SECRET, "POST", "/v1/orders", ts, nonce, body),
            }
            async with session.post(
                f"http://127.0.0.1:{PORTS['gateway']}/v1/orders", data=body, headers=headers
            ) as r:
                await r.read()
                return r.status

        # Warm-up: connections, caches, first-use paths.
        await load(200, concurrency, direct_to(PORTS["passthrough"], 2 * orders))
        await load(200, concurrency, lambda s, i: shop_order(s, orders + i))

        direct = await load(orders, concurrency, direct_to(PORTS["sim_direct"], 0))

        proxy_pid = procs["passthrough"].pid
        cpu0 = cpu_seconds(proxy_pid)
        proxied = await load(orders, concurrency, direct_to(PORTS["passthrough"], orders))
        proxy_cpu = cpu_seconds(proxy_pid) - cpu0

        gw_pid = procs["gateway"].pid
        async with aiohttp.ClientSession() as session:
            done_before = await final_orders(session)
            cpu0 = cpu_seconds(gw_pid)
            gateway = await load(orders, concurrency, lambda s, i: shop_order(s, i + orders + 200))
            deadline = time.monotonic() + 60
            while await final_orders(session) - done_before < orders and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            finished = await final_orders(session) - done_before
            gw_cpu = cpu_seconds(gw_pid) - cpu0
        rss = rss_mib(gw_pid)

        # One at a time: what the gateway adds to a single order when nothing queues for the CPU.
        lone_direct = await load(UNLOADED, 1, direct_to(PORTS["sim_direct"], 2 * orders + 400))
        lone_gateway = await load(UNLOADED, 1, lambda s, i: shop_order(s, i + 3 * orders + 400))

        def row(name: str, result: tuple[float, list[float], int], cpu: float | None) -> str:
            seconds, lat, failed = result
            cpu_text = f"{cpu / orders * 1e6:8.0f}" if cpu is not None else "       -"
            return (
                f"{name:<12} {orders / seconds:9.0f} {percentile(lat, 50) * 1000:9.2f} "
                f"{percentile(lat, 99) * 1000:9.2f} {cpu_text} {failed:7d}"
            )

        base50, base99 = percentile(direct[1], 50), percentile(direct[1], 99)
        print(f"orders={orders} concurrency={concurrency} store={store} cores={os.cpu_count()}")
        print(f"{'path':<12} {'orders/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'cpu µs/o':>8} {'errors':>7}")
        print(row("direct", direct, None))
        print(row("passthrough", proxied, proxy_cpu))
        print(row("gateway", gateway, gw_cpu))
        print(
            f"gateway added latency: p50 {(percentile(gateway[1], 50) - base50) * 1000:.2f} ms, "
            f"p99 {(percentile(gateway[1], 99) - base99) * 1000:.2f} ms over direct"
        )
        print(
            f"gateway CPU per order (submit + callback + store): {gw_cpu / orders * 1e6:.0f} µs = "
            f"{gw_cpu / max(proxy_cpu, 1e-9):.2f}x the pass-through proxy's {proxy_cpu / orders * 1e6:.0f} µs"
        )
        print(f"gateway orders final: {finished:.0f}/{orders}; gateway RSS {rss:.1f} MiB")
        lone50 = percentile(lone_gateway[1], 50) - percentile(lone_direct[1], 50)
        lone99 = percentile(lone_gateway[1], 99) - percentile(lone_direct[1], 99)
        print(
            f"one order at a time ({UNLOADED}): direct p50 {percentile(lone_direct[1], 50) * 1000:.2f} ms, "
            f"gateway p50 {percentile(lone_gateway[1], 50) * 1000:.2f} ms; "
            f"added p50 {lone50 * 1000:.2f} ms, p99 {lone99 * 1000:.2f} ms"
        )
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.returncode not in (0, -15) and proc.stderr is not None:
                print(
                    f"{name} exited {proc.returncode}: {proc.stderr.read()[-2000:].decode(errors='replace')}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--profile", metavar="FILE", help="run the gateway under cProfile, stats to FILE")
    soak_options = parser.add_argument_group("soak")
    soak_options.add_argument(
        "--soak", type=float, metavar="MINUTES", help="run the soak for MINUTES instead"
    )
    soak_options.add_argument("--rate", type=float, default=200.0, help="soak orders per second")
    soak_options.add_argument(
        "--warmup",
        type=float,
        metavar="SECONDS",
        help="soak seconds before growth counts (default: the nonce window, 300, or half the soak)",
    )
    soak_options.add_argument(
        "--config",
        type=Path,
        default=ROOT / "gateway.yaml",
        help="soak suppliers, products and knobs from this file (all simulated; default: the demo's)",
    )
    soak_options.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace the gateway's allocations (FRAMES deep) and report the top growers after the warm-up",
    )
    args = parser.parse_args()
    if args.soak is not None:
        from soak import soak  # bench/ is on the path: this file runs as a script

        asyncio.run(soak(args.soak, args.rate, args.store, args.warmup, args.tracemalloc, args.config))
        return
    asyncio.run(run(args.orders, args.concurrency, args.store, args.profile))


if __name__ == "__main__":
    main()
