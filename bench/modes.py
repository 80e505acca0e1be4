"""bench/run.py's `--inflight N` and `--routing`: many orders at a slow supplier, and routing under load.

`--inflight N`: a simulated fulu that answers each submit after `--answer-after` seconds, its
`max_concurrency` at `--max-concurrency` (default N) and a rate limit that never binds; N signed
orders (`wait_seconds: 0`) sent as fast as `--clients` connections allow. Reports the errors (any
answer but 2xx), the time until all were accepted and until all were final, the gateway's peak RSS
and the peak number of its established connections to the supplier (from /proc every 100 ms).

`--routing`: one product with two offers on two simulated suppliers: `best` (priority 1, cheaper)
limited to BEST_RATE/s (burst BEST_BURST, max_wait BEST_MAX_WAIT), `spare` (priority 2) unlimited.
Orders at `--rate` for `--seconds`, open loop, `wait_seconds: 0`; reports the POST latency, how many
orders each supplier got (the gateway's /metrics) and how many were refused (503). An order that
waits for a slot at `best` while `spare` sits idle shows up as POST latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import aiohttp
from processes import (  # bench/ is on the path: it runs as a script
    PRODUCT,
    MachineUse,
    OpenLoop,
    Processes,
    answer,
    clean_up,
    established_to,
    final_orders,
    free_port,
    fulu_supplier,
    launch_gateway,
    launch_simulator,
    loop_of,
    metric_series,
    open_store,
    percentile,
    settle,
    shop_orders,
    wait_ready,
)

SAMPLE_SECONDS: Final = 0.1
BEST_RATE: Final = 50.0
BEST_BURST: Final = 10
BEST_MAX_WAIT: Final = 0.25
DRAIN_SECONDS: Final = 30.0
SETTLE_SECONDS: Final = 60.0
# Limits that never bind: the mode measures what the gateway holds, not what it refuses.
UNLIMITED: Final = {"rate": 1e6, "burst": 1_000_000}


def _line(label: str, value: str) -> None:
    print(f"{label:<30} {value}")


def _statuses(counts: Counter[str]) -> str:
    return ", ".join(f"{status} x{count}" for status, count in sorted(counts.items())) or "none"


def _errors(counts: Counter[str]) -> int:
    return sum(count for status, count in counts.items() if not status.startswith("2"))


async def idle_supplier(session: aiohttp.ClientSession, admin: int, within: float) -> None:
    """Until the gateway has no request in flight at any supplier: its first balance read, answered as
    slowly as a submit, holds a slot of max_concurrency meanwhile, and an order would find it taken."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any((await metric_series(session, admin, "gateway_supplier_inflight")).values()):
            return
        await asyncio.sleep(0.1)


async def inflight(args: argparse.Namespace) -> None:
    n: int = args.inflight
    max_concurrency: int = args.max_concurrency or n
    folder = Path(tempfile.mkdtemp(prefix="gateway-inflight-"))
    taken: set[int] = set()
    procs = Processes(folder)
    try:
        port, admin, sim = free_port(taken), free_port(taken), free_port(taken)
        store, _ = await open_store(args.store, procs, taken, args.appendfsync)
        # The simulator's result clock starts at the submit, not at its answer: final just after it.
        launch_simulator(
            procs, "simulator", sim, f"http://127.0.0.1:{port}/callbacks/fulu", args.loop,
            latency=args.answer_after, result_after=args.answer_after + 0.05,
        )  # fmt: skip
        # The submit timeout must outlast the supplier's answer delay, or every order times out; and
        # its breaker must expect slow answers, or it opens after 20 of them and the rest are 503.
        timeout = args.answer_after + 10
        launch_gateway(
            procs,
            "gateway",
            port=port,
            admin=admin,
            store=store,
            suppliers={
                "fulu": fulu_supplier(
                    sim,
                    max_concurrency=max_concurrency,
                    timeout=timeout,
                    slow_call=args.answer_after * 2 + 1,
                    **UNLIMITED,
                )
            },
            offers=[{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}],
            loop=args.loop,
            # The gateway asks for a 'not found' grace longer than a submit can take (connect included),
            # and nothing should be reconciled while its submit is still on its way.
            orders={
                "not_found_grace": f"{max(60.0, timeout + 2):g}s",
                "reconcile_after": f"{max(30.0, timeout + 2):g}s",
            },
        )
        await procs.wait_port("simulator", sim)
        await procs.wait_port("gateway", port)
        orders = shop_orders(n)  # signed before anything is timed
        gateway_pid = procs.pid("gateway")
        peak_connections = 0
        sampling = True

        async def sample() -> None:
            nonlocal peak_connections
            while sampling:
                # In a thread: reading /proc/net/tcp with 20,000 sockets takes the kernel a while.
                count = await asyncio.to_thread(established_to, gateway_pid, sim)
                peak_connections = max(peak_connections, count)
                await asyncio.sleep(SAMPLE_SECONDS)

        statuses: Counter[str] = Counter()
        async with aiohttp.ClientSession() as admin_session:
            await wait_ready(admin_session, admin)
            await idle_supplier(admin_session, admin, args.answer_after + 10)
            before = await final_orders(admin_session, [admin])
            print(
                f"in flight: {n} orders (wait_seconds 0) from {args.clients} connections, "
                f"store={args.store}, "
                f"supplier answers after {args.answer_after:g} s, max_concurrency {max_concurrency}, "
                f"loop={args.loop} (gateway: {loop_of(gateway_pid)}), cores={os.cpu_count()}, "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            sampler = asyncio.create_task(sample())
            use = MachineUse(procs)
            started = last_answer = time.monotonic()
            pending = iter(orders)
            url = f"http://127.0.0.1:{port}"
            connector = aiohttp.TCPConnector(limit=args.clients)
            async with aiohttp.ClientSession(connector=connector) as client:

                async def sender() -> None:
                    nonlocal last_answer
                    for path, body, headers in pending:
                        try:
                            async with client.post(url + path, data=body, headers=headers) as response:
                                statuses[answer(response.status, await response.read())] += 1
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            statuses[type(exc).__name__] += 1
                        last_answer = time.monotonic()

                await asyncio.gather(*(sender() for _ in range(args.clients)))
            accepted_in = last_answer - started
            accepted = n - _errors(statuses)
            finished = (
                await settle(
                    admin_session, [admin], before + accepted, args.answer_after + 300, poll=SAMPLE_SECONDS
                )
                - before
            )
            final_after = time.monotonic() - started
            busy, others = use.done()
            sampling = False
            await sampler
            waiting = {
                labels: count
                for labels, count in (
                    await metric_series(admin_session, admin, "gateway_orders_processing")
                ).items()
                if count
            }
        _line("errors", f"{_errors(statuses)}   (answers: {_statuses(statuses)})")
        _line("time to accept all", f"{accepted_in:.2f} s")
        _line("time until all final", f"{final_after:.2f} s   ({finished} of {accepted} accepted final)")
        _line("gateway peak RSS", f"{procs.peak_rss_kib('gateway') / 1024:.1f} MiB (VmHWM)")
        _line(
            "peak connections to supplier",
            f"{peak_connections}   (max_concurrency {max_concurrency}; sampled every "
            f"{SAMPLE_SECONDS * 1000:.0f} ms)",
        )
        if waiting:
            _line("still processing", ", ".join(f"{k} x{v:.0f}" for k, v in sorted(waiting.items())))
        _line("gateway log events", _statuses(procs.log_events("gateway")))
        _line("machine", f"{busy:.0%} of the CPUs busy; others (outside the bench) used {others:.2f} cores")
    finally:
        procs.stop()
        clean_up(folder, keep=args.keep)


def _by_supplier(
    series: dict[str, float], operation: str | None = None, result: str | None = None
) -> Counter[str]:
    """Sum a per-supplier metric's samples by supplier, keeping only one operation or result."""
    totals: Counter[str] = Counter()
    for labels, value in series.items():
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if operation is not None and fields.get("operation") != operation:
            continue
        if result is not None and fields.get("result") != result:
            continue
        totals[fields.get("supplier", "?")] += round(value)
    return totals


async def _supplier_counts(session: aiohttp.ClientSession, admin: int) -> dict[str, Counter[str]]:
    requests = await metric_series(session, admin, "gateway_supplier_requests_total")
    limited = await metric_series(session, admin, "gateway_supplier_rate_limited_total")
    return {
        "submits": _by_supplier(requests, operation="submit"),
        "waited": _by_supplier(limited, result="waited"),
        "rejected": _by_supplier(limited, result="rejected"),
    }


async def routing(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="gateway-routing-"))
    taken: set[int] = set()
    procs = Processes(folder)
    try:
        port, admin = free_port(taken), free_port(taken)
        sims = {"best": free_port(taken), "spare": free_port(taken)}
        store, _ = await open_store(args.store, procs, taken, args.appendfsync)
        for name, sim in sims.items():
            launch_simulator(
                procs, f"simulator-{name}", sim, f"http://127.0.0.1:{port}/callbacks/{name}", args.loop
            )
        suppliers: dict[str, dict[str, Any]] = {
            "best": fulu_supplier(sims["best"], rate=BEST_RATE, burst=BEST_BURST, max_wait=BEST_MAX_WAIT),
            "spare": fulu_supplier(sims["spare"]),
        }
        launch_gateway(
            procs,
            "gateway",
            port=port,
            admin=admin,
            store=store,
            suppliers=suppliers,
            offers=[
                {"supplier": "best", "sku": "18221081", "cost": "49.30", "priority": 1},
                {"supplier": "spare", "sku": "18221081", "cost": "49.50", "priority": 2},
            ],
            loop=args.loop,
        )
        for name, sim in sims.items():
            await procs.wait_port(f"simulator-{name}", sim)
        await procs.wait_port("gateway", port)
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, admin)
            url = f"http://127.0.0.1:{port}"
            # Warm-up: first-use paths, one order at a time; then the limit's burst refills.
            for path, body, headers in shop_orders(BEST_BURST):
                async with session.post(url + path, data=body, headers=headers) as response:
                    await response.read()
            await asyncio.sleep(2 * BEST_BURST / BEST_RATE + 0.5)
            before = await _supplier_counts(session, admin)
            final_before = await final_orders(session, [admin])
            orders = shop_orders(int(args.rate * args.seconds) + 10)  # signed before anything is timed
            print(
                f"routing under load: {args.rate:g} orders/s for {args.seconds:g} s (wait_seconds 0), "
                f"product {PRODUCT}, routing priority: best (limit {BEST_RATE:g}/s, burst {BEST_BURST}, "
                f"max_wait {BEST_MAX_WAIT * 1000:g} ms) then spare (unlimited); store={args.store}, "
                f"loop={args.loop} (gateway: {loop_of(procs.pid('gateway'))}), cores={os.cpu_count()}, "
                f"load average {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            async with aiohttp.ClientSession() as client:
                load = OpenLoop(client, lambda i: (url + orders[i][0], *orders[i][1:]), args.rate)
                use = MachineUse(procs)
                await load.run(args.seconds)
                await load.drain(DRAIN_SECONDS)
                busy, others = use.done()
            accepted = load.sent - load.errors
            finished = await settle(session, [admin], final_before + accepted, SETTLE_SECONDS) - final_before
            after = await _supplier_counts(session, admin)
        _line("sent", f"{load.sent} (skipped {load.skipped}); answers: {_statuses(load.statuses)}")
        # Every answer, refused or not: the shop waits for each.
        # p90 too: only the share of orders beyond the best offer's limit waits, which p50 may not reach.
        p50, p90, p99 = (percentile(load.latencies, q) for q in (50, 90, 99))
        _line("POST latency", f"p50 {p50 * 1e3:.1f} ms, p90 {p90 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms")
        _line("refused (503)", str(sum(n for status, n in load.statuses.items() if status.startswith("503"))))
        _line("errors (any non-2xx)", str(load.errors))
        for name in suppliers:
            submits = after["submits"][name] - before["submits"][name]
            waited = after["waited"][name] - before["waited"][name]
            rejected = after["rejected"][name] - before["rejected"][name]
            _line(
                f"orders to {name}",
                f"{submits} ({submits / max(accepted, 1):.0%}); rate limit: waited {waited}, "
                f"over max_wait {rejected}",
            )
        _line("final", f"{finished} of {accepted} accepted")
        _line("gateway log events", _statuses(procs.log_events("gateway")))
        _line("machine", f"{busy:.0%} of the CPUs busy; others (outside the bench) used {others:.2f} cores")
    finally:
        procs.stop()
        clean_up(folder, keep=args.keep)
