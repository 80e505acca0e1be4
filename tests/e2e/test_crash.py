"""Crash safety: `kill -9` of a real gateway process (SQLite store) with orders in flight loses nothing.

The four simulated suppliers and the shops' notification endpoint run in the test process; the
gateway runs as `python -m gateway run`, and is killed with SIGKILL at random moments (once while
still starting) and restarted on the same database and port while orders keep coming. Afterwards
every accepted order is audited against the suppliers' ledgers: it exists, its final state is what
the supplier did, no account is charged twice, and the shop was told the final state.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp import ClientSession, ClientTimeout

from gateway.simulator import Simulator
from gateway.simulator.faults import Fault
from tests.e2e.fleet import (
    FINAL,
    GatewayProcess,
    NotificationSink,
    audit,
    eventually,
    place_until_answered,
    read_orders,
    restartable_port,
    seeds,
    start_supplier,
    tally,
)
from tests.e2e.harness import Shop, SupplierSpec, config_yaml
from tests.e2e.test_protocols import PROTOCOLS, offers

# Latency holds each submit open at the supplier after it is recorded, so kills land mid-send;
# a few faults and lost callbacks make the restarted process reconcile as well as resume.
# On top, the network's and the suppliers' own faults: resets after charging, a crash that refuses
# connections for a moment, replicas that deny orders they hold (for less than the grace), and
# forged callbacks (juhe's validly signed with the status flipped).
KNOBS: Final[dict[str, dict[str, Any]]] = {
    "fulu": {
        "latency": 0.1,
        "result_after": 0.4,
        "success_rate": 0.85,
        "callback_drop_rate": 0.2,
        "reset_rate": 0.02,
    },
    "ofpay": {
        "latency": 0.1,
        "result_after": 0.6,
        "success_rate": 0.85,
        "refuse_rate": 0.05,
        "crash_rate": 0.02,
        "refuse_for": 0.3,
    },
    "juhe": {
        "latency": 0.05,
        "result_after": 0.3,
        "success_rate": 0.9,
        "hang_rate": 0.03,
        "hang_charges": False,
        "callback_duplicate_rate": 0.3,
        "reset_rate": 0.03,
        "forged_callback_rate": 0.1,
    },
    "dayuanren": {
        "latency": 0.15,
        "result_after": 0.5,
        "success_rate": 0.85,
        "partial_rate": 0.2,
        "error_rate": 0.03,
        "lagging_rate": 0.1,
        "lag_for": 1.0,  # below not_found_grace
    },
}
ORDERS: Final = {
    "max_attempts": 2,
    "reconcile_after": "500ms",
    "reconcile_every": "300ms",
    # Above the supplier timeout: "not found" is trusted only once a submit cannot still be on its way.
    "not_found_grace": "2s",
}
# The lease of a notification cut off by a kill lasts timeout + 5 s; retries of refused ones are quick.
NOTIFY: Final = {"timeout": "1s", "max_attempts": 10, "backoff": {"initial": "200ms", "max": "1s"}}
SUPPLIER: Final = {
    "rate_limit": {"rate": 1000, "per": "1s", "burst": 200, "max_wait": "250ms"},
}
KILLS: Final = 5
ORDER_INTERVAL_SECONDS: Final = 0.015
TAIL_SECONDS: Final = 1.5  # orders keep coming into the last process before placing stops
# Guards against a hang, not measures of speed: a quiet machine settles in seconds, a loaded one
# restarts each killed process much more slowly, and the loops below stop as soon as they are done.
SETTLE_SECONDS: Final = 60.0
PLACE_WITHIN_SECONDS: Final = 90.0
RUN_WITHIN_SECONDS: Final = 180.0


def _specs() -> dict[str, SupplierSpec]:
    return {
        name: SupplierSpec(
            protocol=name,
            credentials=dict(PROTOCOLS[name]["credentials"]),
            timeout="1s",
            extra=dict(SUPPLIER),
        )
        for name in KNOBS
    }


def _mid_send(simulators: dict[str, Simulator], at: float) -> int:
    """Submits the suppliers had recorded but not yet answered at monotonic time `at`."""
    return sum(
        1
        for name, simulator in simulators.items()
        for entry in simulator.ledger.entries()
        if at - KNOBS[name]["latency"] < entry.accepted_at <= at
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds("CRASH_SEEDS", [1]))
async def test_kill_9_loses_no_order_and_charges_none_twice(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    port = restartable_port()
    cleanups: list[Callable[[], Awaitable[None]]] = []
    sink = NotificationSink()
    process: GatewayProcess | None = None
    placements: list[asyncio.Task[None]] = []
    try:
        simulators: dict[str, Simulator] = {}
        specs = _specs()
        for index, (name, spec) in enumerate(specs.items()):
            spec.knobs = {**KNOBS[name], "seed": seed * 100 + index}
            simulators[name], spec.url = await start_supplier(name, spec, port, cleanups)
        notify_url = await sink.start()
        config = tmp_path / "gateway.yaml"
        config.write_text(
            config_yaml(
                port,
                specs,
                offers(*((name, name) for name in specs)),
                store=f"sqlite:///{tmp_path}/gateway.db",
                routing="weighted",
                orders=ORDERS,
                notify=NOTIFY,
            )
        )
        process = GatewayProcess(config, port, tmp_path)
        session = ClientSession(timeout=ClientTimeout(total=5))
        cleanups.append(session.close)
        shop = Shop(session, f"http://127.0.0.1:{port}")
        await process.start()

        accepted: dict[str, dict[str, Any]] = {}
        placing = True

        async def place(number: int) -> None:
            order: dict[str, Any] = {
                "order_id": f"C{seed}-{number:05d}",
                "product": "mobile.cmcc.50",
                "account": f"139{number:08d}",  # one account per order: a double charge shows
                "notify_url": notify_url,
                "wait_seconds": 0,
            }
            _, answer = await place_until_answered(shop, order, within=PLACE_WITHIN_SECONDS)
            accepted[order["order_id"]] = answer

        async def produce() -> None:
            number = 0
            while placing:
                placements.append(asyncio.create_task(place(number)))
                number += 1
                await asyncio.sleep(ORDER_INTERVAL_SECONDS)

        producer = asyncio.create_task(produce())
        mid_send = []
        startup_kill = rng.randrange(KILLS)
        async with asyncio.timeout(RUN_WITHIN_SECONDS):
            for kill in range(KILLS):
                await asyncio.sleep(rng.uniform(0.05, 2.0))
                mid_send.append(_mid_send(simulators, time.monotonic()))
                process.kill()
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                if kill == startup_kill:
                    # Killed while starting: before, during or just after start-up recovery.
                    process.spawn()
                    await asyncio.sleep(rng.uniform(0.4, 1.2))
                    process.kill()
                await process.start()
            await asyncio.sleep(TAIL_SECONDS)
            placing = False
            await producer
            placements.append(producer)
            await asyncio.gather(*placements)

            # Settle: each order is read until final; a final order never changes, checked below.
            pending = set(accepted)
            first_final: dict[str, str] = {}
            deadline = time.monotonic() + SETTLE_SECONDS
            while pending and time.monotonic() < deadline:
                for order_id, order in (await read_orders(shop, pending)).items():
                    if order is not None and order["status"] in FINAL:
                        first_final[order_id] = order["status"]
                        pending.discard(order_id)
                await asyncio.sleep(0.3)
            # Notifications cut off by a kill come due again once their lease expires.
            await eventually(
                lambda: all(o in sink.received for o in first_final),
                within=max(0.0, deadline - time.monotonic()),
            )
            for simulator in simulators.values():
                async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                    await simulator.idle()
            orders = await read_orders(shop, accepted)

        problems = audit(
            orders,
            {name: simulator.ledger for name, simulator in simulators.items()},
            notified=sink.received,
        )
        problems.extend(
            f"{order_id}: was {status}, now {status_now}"
            for order_id, status in first_final.items()
            if (status_now := (orders[order_id] or {}).get("status")) != status
        )
        problems.extend(
            f"{order_id}: answered {answer['status']} when placed, then {status_now}"
            for order_id, answer in accepted.items()
            if answer["status"] in FINAL
            and (status_now := (orders[order_id] or {}).get("status")) != answer["status"]
        )
        troubles = process.troubles()
        exit_code = await process.stop()
        report = (
            f"seed {seed}: {len(accepted)} orders, {process.started} processes, submits mid-send at each "
            f"kill {mid_send}, {sum(len(n) > 1 for n in sink.received.values())} orders notified again,"
            f" outcomes {tally(orders)}"
        )
        print(report)
        assert problems == [], f"{report}\n" + "\n".join(problems[:50])
        assert troubles == [], f"{report}\ngateway logged:\n" + "\n".join(troubles[:20])
        assert exit_code == 0, f"exit code {exit_code} after SIGTERM:\n{process.output_tail()}"
        assert sum(mid_send) > 0, f"no kill landed while a submit was in flight: {report}"
        drawn = {fault: sum(len(s.ledger.with_fault(fault)) for s in simulators.values()) for fault in Fault}
        assert all(drawn.values()), f"a fault was never drawn, the run proved less: {drawn}"
    finally:
        for task in placements:
            task.cancel()
        if process is not None and process.running:
            process.kill()
        for cleanup in reversed(cleanups):
            await cleanup()
        await sink.close()
