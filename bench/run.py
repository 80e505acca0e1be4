"""The benchmark: what the gateway adds per order, next to a direct call and a bare proxy, in one run.

Rows (`--sides`, comma-separated; default all):

    direct    wrk -> a simulated fulu supplier (bench/servers.py)
    proxy     wrk -> a bare aiohttp pass-through proxy (bench/servers.py) -> the simulator
    memory    wrk -> `gateway run` on memory://  -> its simulator
    sqlite    the same on sqlite:// (synchronous=FULL, the store's default)
    redis1    the same on a redis-server of its own (AOF on, appendfsync always)
    redis2    two gateways sharing one redis-server, the load split evenly over them

The simulator answers every submit "success" in its own reply (`--supplier instant`, the default):
the order is final when the submit returns, so the gateway does per order what the proxy does per
request, one request in and one out. `--supplier callback` accepts and calls back 50 ms later.

Each side is started afresh per round, on loopback. Per round and side: a warm-up, then wrk at
saturation for `--seconds` (the target pinned to CPU 0 with taskset, a second gateway to CPU 1), then
a paced open loop at `--rate` requests/s for `--seconds` from this process. Every request is signed
before its timed part; no nonce or order id is sent twice. CPU per order is read from /proc for the
target process(es) alone (for the gateways: submit, callback and store; an order counts once it is
final). The table shows medians over `--rounds`. Usage:

    .venv/bin/python bench/run.py [--seconds 10] [--rounds 3] [--connections 64] [--rate 300]
                                  [--sides direct,proxy,memory,sqlite,redis1,redis2] [--loop uvloop|asyncio]

Other modes (bench/modes.py, bench/soak.py):

    bench/run.py --inflight N [--answer-after 5] [--max-concurrency N] [--store sqlite|memory|redis]
    bench/run.py --routing [--rate 200] [--seconds 10] [--store ...]
    bench/run.py --soak MINUTES [--rate 200] [--warmup SECONDS] [--store sqlite|memory]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp
from processes import (  # bench/ is on the path: this file runs as a script
    LOOPS,
    WRK_SCRIPT,
    LoadResult,
    OpenLoop,
    Prepared,
    Processes,
    clean_up,
    final_orders,
    free_port,
    fulu_requests,
    fulu_supplier,
    launch_gateway,
    launch_proxy,
    launch_simulator,
    loop_of,
    machine_jiffies,
    machine_use,
    open_store,
    percentile,
    python_load,
    redis_commands,
    run_on,
    settle,
    shop_orders,
    wait_ready,
    write_requests,
    wrk_load,
)

ROWS: Final = {
    "direct": "direct",
    "proxy": "proxy",
    "memory": "gateway memory",
    "sqlite": "gateway sqlite",
    "redis1": "gateway redis x1",
    "redis2": "gateway redis x2",
}
GROUPS: Final = {"redis": ("redis1", "redis2"), "gateway": ("memory", "sqlite", "redis1", "redis2")}
WARMUP_SECONDS: Final = 2.0
SETTLE_SECONDS: Final = 60.0
DRAIN_SECONDS: Final = 30.0
# Requests prepared per load process and second, before a side's first round: more than it can take,
# so no nonce or order id is sent twice (a wrap-around is reported). Later rounds prepare 1.5x the
# rate seen, so a fast side does not spend seconds signing requests it never sends.
PREPARED_PER_SECOND: Final = {"direct": 12000, "proxy": 6000, "gateway": 3000}
NO_REDIS: Final = "not run: no redis-server on PATH"


@dataclass
class Round:
    """One side's figures in one round; times in seconds, CPU in µs per order (or request)."""

    rate: float  # at saturation: requests/s (direct, proxy) or orders/s counted when final (gateways)
    cpu_us: float  # the target process(es), at saturation
    p50: float  # paced, absolute
    p99: float
    rss_kib: int  # VmHWM of the target (the larger of two gateways)
    errors: int  # non-2xx and socket errors, saturated and paced together
    accepted: int
    settle_seconds: float  # after the saturating load, until its accepted orders were final
    saturated_p99: float
    paced_cpu_us: float  # the target at the paced rate
    side_us: dict[str, float] = field(default_factory=dict)  # simulator, redis, load: per order
    redis_commands: float = 0.0  # per order
    target_busy: float = 0.0  # share of a core the target (each, of two) used at saturation
    busy: float = 0.0  # share of the machine's CPUs busy at saturation, whoever used them
    others: float = 0.0  # cores used meanwhile by processes outside this bench
    loop: str = "?"
    wraps: int = 0
    skipped: int = 0  # paced requests not sent: too many unanswered


@dataclass
class Setup:
    """A side's running processes and where its load goes."""

    procs: Processes
    kind: str  # "direct", "proxy" or "gateway": which requests it takes
    ports: list[int]
    admins: list[int] = field(default_factory=list)  # the gateways' admin listeners
    target: str = "gateway"  # name prefix of the measured process(es)
    redis_port: int | None = None


@dataclass
class Bench:
    seconds: float
    rounds: int
    connections: int
    rate: float
    loop: str
    appendfsync: str
    instant: bool
    use_wrk: bool
    pin: bool
    folder: Path
    profile: Path | None = None
    ports: set[int] = field(default_factory=set)
    seen: dict[str, float] = field(default_factory=dict)  # side -> the last round's rate

    def cpu_for(self, index: int) -> int | None:
        return index if self.pin else None

    def port(self) -> int:
        return free_port(self.ports)

    async def start(self, side: str, procs: Processes) -> Setup:
        loop, nowhere = self.loop, "http://127.0.0.1:1/"
        if side == "direct":
            port = self.port()
            launch_simulator(
                procs,
                "simulator",
                port,
                nowhere,
                loop,
                drop_callbacks=True,
                instant=self.instant,
                cpu=self.cpu_for(0),
            )
            await procs.wait_port("simulator", port)
            return Setup(procs, "direct", [port], target="simulator")
        if side == "proxy":
            sim, proxy = self.port(), self.port()
            launch_simulator(
                procs, "simulator", sim, nowhere, loop, drop_callbacks=True, instant=self.instant
            )
            launch_proxy(procs, "proxy", proxy, sim, loop, cpu=self.cpu_for(0))
            await procs.wait_port("simulator", sim)
            await procs.wait_port("proxy", proxy)
            return Setup(procs, "proxy", [proxy], target="proxy")
        store, redis_port = await open_store(
            "redis" if side.startswith("redis") else side, procs, self.ports, self.appendfsync
        )
        setup = Setup(procs, "gateway", [], redis_port=redis_port)
        waits = []
        for i in range(2 if side == "redis2" else 1):
            port, admin, sim = self.port(), self.port(), self.port()
            callbacks = f"http://127.0.0.1:{port}/callbacks/fulu"
            launch_simulator(procs, f"simulator-{i}", sim, callbacks, loop, instant=self.instant)
            launch_gateway(
                procs,
                f"gateway-{i}",
                port=port,
                admin=admin,
                store=store,
                suppliers={"fulu": fulu_supplier(sim)},
                offers=[{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}],
                loop=loop,
                cpu=self.cpu_for(i),
                profile=self.profile / f"{procs.folder.name}-{i}.prof" if self.profile else None,
            )
            waits += [procs.wait_port(f"simulator-{i}", sim), procs.wait_port(f"gateway-{i}", port)]
            setup.ports.append(port)
            setup.admins.append(admin)
        await asyncio.gather(*waits)  # the instances start side by side
        return setup

    def prepare(self, setup: Setup, side: str, seconds: float) -> list[list[Prepared]]:
        """A fresh request set per load process, for `seconds` of load at more than the side can take."""
        per_second = PREPARED_PER_SECOND[setup.kind]
        if side in self.seen:
            per_second = min(per_second, int(self.seen[side] * 1.5 / len(setup.ports)) + 200)
        count = int(per_second * (seconds + 1))
        make = shop_orders if setup.kind == "gateway" else fulu_requests
        return [make(count) for _ in setup.ports]

    async def saturate(self, setup: Setup, batches: list[list[Prepared]], seconds: float) -> list[LoadResult]:
        """Load every port at once, the connections split evenly."""
        each = max(1, self.connections // len(setup.ports))
        if not self.use_wrk:
            return list(
                await asyncio.gather(
                    *(
                        python_load(port, each, seconds, batch)
                        for port, batch in zip(setup.ports, batches, strict=True)
                    )
                )
            )
        script = setup.procs.folder / "orders.lua"
        script.write_text(WRK_SCRIPT)
        files = []
        for i, batch in enumerate(batches):
            files.append(setup.procs.folder / f"requests-{i}.tsv")
            write_requests(files[-1], batch)
        try:
            return list(
                await asyncio.gather(
                    *(
                        wrk_load(port, each, seconds, file, script)
                        for port, file in zip(setup.ports, files, strict=True)
                    )
                )
            )
        finally:
            for file in files:
                file.unlink()

    async def measure(self, side: str, round_number: int) -> Round:
        procs = Processes(self.folder / f"{side}-{round_number}")
        try:
            setup = await self.start(side, procs)
            async with aiohttp.ClientSession() as session:
                for admin in setup.admins:
                    await wait_ready(session, admin)
                return await self._measure(side, setup, session)
        finally:
            procs.stop()

    async def _measure(self, side: str, setup: Setup, session: aiohttp.ClientSession) -> Round:
        procs, gateway = setup.procs, setup.kind == "gateway"
        helpers = [p for p in ("simulator", "redis") if p != setup.target and procs.named(p)]

        async def final() -> int:
            return await final_orders(session, setup.admins) if gateway else 0

        # Warm-up: connections, caches, first-use paths; its orders finish before anything counts.
        warm = await self.saturate(setup, self.prepare(setup, side, min(WARMUP_SECONDS, self.seconds)),
                                   min(WARMUP_SECONDS, self.seconds))  # fmt: skip
        if gateway:
            await settle(session, setup.admins, sum(r.requests - r.errors for r in warm), SETTLE_SECONDS)

        # Saturation: wrk as fast as the target answers.
        batches = self.prepare(setup, side, self.seconds)
        before = await final()
        cpu0 = {prefix: procs.cpu(prefix) for prefix in (setup.target, *helpers)}
        commands0 = await redis_commands(setup.redis_port)
        busy0, own0 = machine_jiffies(), time.process_time()
        results = await self.saturate(setup, batches, self.seconds)
        load_seconds = max(r.seconds for r in results)
        accepted = sum(r.requests - r.errors for r in results)
        settled_at = time.monotonic()
        finished = accepted
        if gateway:
            finished = await settle(session, setup.admins, before + accepted, SETTLE_SECONDS) - before
            if finished < accepted:
                print(f"  {ROWS[side]}: only {finished} of {accepted} accepted orders final", file=sys.stderr)
        settle_seconds = time.monotonic() - settled_at if gateway else 0.0
        busy1 = machine_jiffies()
        cpu = {prefix: procs.cpu(prefix) - cpu0[prefix] for prefix in cpu0}
        commands = await redis_commands(setup.redis_port) - commands0
        load_cpu = sum(r.cpu for r in results)
        # A Python load runs in this process: its CPU is part of our own already.
        ours = sum(cpu.values()) + time.process_time() - own0 + (load_cpu if self.use_wrk else 0.0)
        busy, others = machine_use(busy0, busy1, ours)
        per_order = 1e6 / max(accepted, 1)

        # Paced: an open loop at `rate`, the requests signed beforehand, spread over the ports.
        paced_count = int(self.rate * self.seconds) + 10
        paced_batch = self.prepare_paced(setup, paced_count)
        paced_cpu0 = procs.cpu(setup.target)
        paced_before = await final()
        paced_session = aiohttp.ClientSession()
        try:
            ports = setup.ports
            paced = OpenLoop(
                paced_session,
                lambda i: (
                    f"http://127.0.0.1:{ports[i % len(ports)]}{paced_batch[i][0]}",
                    *paced_batch[i][1:],
                ),
                self.rate,
            )
            await paced.run(self.seconds)
            await paced.drain(DRAIN_SECONDS)
        finally:
            await paced_session.close()
        paced_ok = paced.sent - paced.errors
        if gateway:
            await settle(session, setup.admins, paced_before + paced_ok, SETTLE_SECONDS)
        paced_cpu = procs.cpu(setup.target) - paced_cpu0

        return Round(
            rate=finished / (load_seconds + settle_seconds),
            cpu_us=cpu[setup.target] * per_order,
            p50=percentile(paced.latencies, 50),
            p99=percentile(paced.latencies, 99),
            rss_kib=procs.peak_rss_kib(setup.target),
            errors=sum(r.errors for r in results) + paced.errors,
            accepted=accepted,
            settle_seconds=settle_seconds,
            saturated_p99=max(r.p99 for r in results),
            paced_cpu_us=paced_cpu * 1e6 / max(paced_ok, 1),
            side_us={**{p: cpu[p] * per_order for p in helpers}, "load": load_cpu * per_order},
            redis_commands=commands / max(accepted, 1),
            # Well below 100%, the target was not what limited req/s: the load, the simulator or
            # other work on the machine was.
            target_busy=cpu[setup.target] / (load_seconds + settle_seconds) / len(setup.ports),
            busy=busy,
            others=others,
            loop=loop_of(procs.pid(procs.named(setup.target)[0])),
            wraps=sum(r.wraps for r in results),
            skipped=paced.skipped,
        )

    @staticmethod
    def prepare_paced(setup: Setup, count: int) -> list[Prepared]:
        return shop_orders(count) if setup.kind == "gateway" else fulu_requests(count)


def parse_sides(text: str) -> list[str]:
    sides: list[str] = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        chosen = GROUPS.get(name, (name,))
        unknown = [s for s in chosen if s not in ROWS]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown side {name!r}; valid: {', '.join([*ROWS, *GROUPS])}")
        sides += [s for s in chosen if s not in sides]
    # Always in the table's order, whatever order they were asked in.
    return [s for s in ROWS if s in sides]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(results: dict[str, list[Round]], skipped: dict[str, str], rate: float, loop: str) -> None:
    """The table (medians over rounds), the details, and what the columns mean."""
    med = {
        side: {
            key: median([getattr(r, key) for r in runs])
            for key in ("rate", "cpu_us", "p50", "p99", "rss_kib", "paced_cpu_us", "saturated_p99")
        }
        for side, runs in results.items()
        if runs
    }
    base = med.get("direct")
    proxy = med.get("proxy")

    def ms(value: float | None) -> str:
        return f"{value * 1e3:8.2f}" if value is not None else f"{'-':>8}"

    def ratio(value: float, of: float | None) -> str:
        return f"{value / of:8.2f}x" if of else f"{'-':>9}"

    print()
    print(
        f"{'side':<17} {'CPU µs/o':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
        f"{'+p99 ms':>8} {'RSS MiB':>8} {'CPU/proxy':>9} {'rps/proxy':>9} {'errors':>6}"
    )
    for side, label in ROWS.items():
        if side in skipped:
            print(f"{label:<17} {skipped[side]}")
            continue
        if side not in med:
            continue
        m = med[side]
        added50 = m["p50"] - base["p50"] if base and side != "direct" else None
        added99 = m["p99"] - base["p99"] if base and side != "direct" else None
        cpu_ratio = (
            ratio(m["cpu_us"], proxy["cpu_us"] if proxy else None) if side != "direct" else f"{'-':>9}"
        )
        rate_ratio = ratio(m["rate"], proxy["rate"] if proxy else None) if side != "direct" else f"{'-':>9}"
        print(
            f"{label:<17} {m['cpu_us']:9.0f} {m['rate']:8.0f} {ms(m['p50'])} {ms(m['p99'])} {ms(added50)} "
            f"{ms(added99)} {m['rss_kib'] / 1024:8.1f} {cpu_ratio} {rate_ratio} "
            f"{sum(r.errors for r in results[side]):6d}"
        )

    print()
    print(
        f"{'side':<17} {'req/s by round':>20} {'sat p99':>8} {'paced':>6} {'sim':>6} {'redis':>6} "
        f"{'cmds/o':>6} {'load':>5} {'settle':>6} {'target':>6} {'busy':>5} {'others':>6} {'loop':>8}"
    )
    for side, runs in results.items():
        if not runs:
            continue
        m = med[side]
        spread = "/".join(f"{r.rate:.0f}" for r in runs)

        def us(key: str, runs: list[Round] = runs) -> str:
            values = [r.side_us[key] for r in runs if key in r.side_us]
            return f"{median(values):6.0f}" if values else f"{'-':>6}"

        commands = (
            f"{median([r.redis_commands for r in runs]):6.1f}" if side.startswith("redis") else f"{'-':>6}"
        )
        loops = "/".join(sorted({r.loop for r in runs}))
        settled = max(r.settle_seconds for r in runs)
        print(
            f"{ROWS[side]:<17} {spread:>20} {ms(m['saturated_p99'])} {m['paced_cpu_us']:6.0f} "
            f"{us('simulator')} {us('redis')} {commands} {us('load'):>5} {settled:6.1f} "
            f"{median([r.target_busy for r in runs]):6.0%} "
            f"{median([r.busy for r in runs]):5.0%} {median([r.others for r in runs]):6.2f} {loops:>8}"
        )
        if any(r.wraps for r in runs):
            print(f"{'':<17} warning: prepared requests ran out and were re-sent; raise PREPARED_PER_SECOND")
        if any(r.skipped for r in runs):
            print(f"{'':<17} warning: paced requests skipped: over 2000 unanswered at once")
        if m["rate"] < rate:
            print(f"{'':<17} note: saturates below the paced {rate:g}/s: its p50/p99 are mostly queueing")
        if any(r.loop != loop for r in runs):
            print(f"{'':<17} warning: asked for {loop}, runs on {loops}: its ratios compare different loops")
    print()
    print(
        "CPU µs/o: CPU of the target process(es) per order (direct: the simulator; proxy: the proxy; "
        "gateways: submit, callback, store). req/s: at saturation, gateway orders counted once final. "
        "p50/p99: paced, absolute; +p50/+p99: added over direct's. RSS: peak (VmHWM). "
        "Details: sat p99 at saturation (wrk); paced: target CPU µs/o at the paced rate; sim, redis, load: "
        "CPU µs/o of the simulator(s), redis-server and the load generator; cmds/o: Redis commands per "
        "order; settle: seconds after the load until every accepted order was final (longest round); "
        "target: share of a core the target used at saturation (well below 100%: something else limited "
        "req/s); "
        "busy: share of all CPUs in use, by anything; others: cores used by processes outside the bench; "
        "loop: the target's event loop as /proc shows it."
    )


async def table(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    pin = shutil.which("taskset") is not None and cores >= 2 and not args.no_pin
    folder = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    bench = Bench(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        rate=args.rate,
        loop=args.loop,
        appendfsync=args.appendfsync,
        instant=args.supplier == "instant",
        use_wrk=use_wrk,
        pin=pin,
        folder=folder,
        profile=args.profile,
    )
    print(
        f"cores={cores} seconds={args.seconds:g} rounds={args.rounds} connections={args.connections} "
        f"rate={args.rate:g}/s loop={args.loop} supplier={args.supplier} "
        f"load={'wrk' if use_wrk else 'python'} "
        f"redis appendfsync={args.appendfsync} sqlite synchronous=FULL; "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    if pin:
        print(
            "pinned with taskset: the target (simulator for direct, proxy, gateway) on CPU 0, a second "
            "gateway on CPU 1; redis-server, the other simulators and the load unpinned"
        )
    else:
        print("not pinned (no taskset, one core, or --no-pin)")
    if not use_wrk:
        print("no wrk: the saturating load runs in this process, taking a share of the CPUs")
    sides = args.sides
    skipped = {}
    if shutil.which("redis-server") is None:
        skipped = {side: NO_REDIS for side in sides if side.startswith("redis")}
    results: dict[str, list[Round]] = {side: [] for side in sides if side not in skipped}
    try:
        for round_number in range(1, args.rounds + 1):
            for side, rounds in results.items():
                result = await bench.measure(side, round_number)
                bench.seen[side] = result.rate
                rounds.append(result)
                print(
                    f"round {round_number} {ROWS[side]:<17} {result.rate:7.0f}/s  {result.cpu_us:6.0f} µs/o  "
                    f"paced p50 {result.p50 * 1e3:.2f} p99 {result.p99 * 1e3:.2f} ms  "
                    f"accepted {result.accepted}, settled in {result.settle_seconds:.1f} s, "
                    f"errors {result.errors}",
                    flush=True,
                )
        report(results, skipped, args.rate, args.loop)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        clean_up(folder, keep=args.keep)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, help="load per phase and round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table shows medians (default 3)")
    parser.add_argument(
        "--connections", type=int, default=64, help="wrk connections, split over instances (default 64)"
    )
    parser.add_argument(
        "--rate", type=float, help="paced requests/s (default 300; --routing and --soak: 200)"
    )
    parser.add_argument(
        "--sides",
        type=parse_sides,
        default=list(ROWS),
        help=f"comma list of {', '.join(ROWS)} (or redis, gateway); default all",
    )
    parser.add_argument(
        "--loop", choices=LOOPS, default="uvloop", help="event loop of every server (default uvloop)"
    )
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default="always")
    parser.add_argument(
        "--supplier",
        choices=("instant", "callback"),
        default="instant",
        help="the table's supplier: success in its reply (instant, default) or accepted, then a callback",
    )
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto", help="saturating load")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the targets to cores")
    parser.add_argument("--keep", action="store_true", help="keep every process's log and configuration")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="run the gateways under cProfile, stats to DIR/*.prof"
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "memory", "redis"),
        default="sqlite",
        help="--inflight, --routing, --soak",
    )

    inflight = parser.add_argument_group("in flight (bench/modes.py)")
    inflight.add_argument("--inflight", type=int, metavar="N", help="N orders in flight at a slow supplier")
    inflight.add_argument(
        "--answer-after", type=float, default=5.0, help="the supplier's answer delay, s (default 5)"
    )
    inflight.add_argument("--max-concurrency", type=int, help="the supplier's max_concurrency (default N)")
    inflight.add_argument(
        "--clients", type=int, default=256, help="client connections sending the orders (default 256)"
    )

    routing = parser.add_argument_group("routing under load (bench/modes.py)")
    routing.add_argument(
        "--routing", action="store_true", help="two offers, the better one rate-limited below the load"
    )

    soak_options = parser.add_argument_group("soak (bench/soak.py)")
    soak_options.add_argument("--soak", type=float, metavar="MINUTES", help="run the soak for MINUTES")
    soak_options.add_argument(
        "--warmup",
        type=float,
        metavar="SECONDS",
        help="soak seconds before growth counts (default: the nonce window, 300, or half the soak)",
    )
    soak_options.add_argument(
        "--config",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "gateway.yaml",
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
    modes = {
        "--inflight": args.inflight is not None,
        "--routing": args.routing,
        "--soak": args.soak is not None,
    }
    if sum(modes.values()) > 1:
        parser.error(f"{', '.join(m for m, on in modes.items() if on)}: separate modes, one at a time")

    if args.soak is not None:
        from soak import soak

        if args.store == "redis":
            parser.error("the soak runs on --store sqlite or memory")
        asyncio.run(
            soak(args.soak, args.rate or 200.0, args.store, args.warmup, args.tracemalloc, args.config)
        )
        return
    if args.inflight is not None:
        from modes import inflight

        run_on(args.loop, inflight(args))
        return
    if args.routing:
        from modes import routing

        args.rate = args.rate or 200.0
        args.seconds = args.seconds or 10.0
        run_on(args.loop, routing(args))
        return
    args.rate = args.rate or 300.0
    args.seconds = args.seconds or 10.0
    run_on(args.loop, table(args))


if __name__ == "__main__":
    main()
