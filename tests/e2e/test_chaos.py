"""Chaos: a few hundred orders across all four simulated suppliers, each misbehaving in its own way.

Hangs that charge and hangs that do not, 5xx and garbage after charging, refusals, lost, duplicate
and late callbacks, partial deliveries; connections reset after charging, suppliers that crash
after charging and refuse connections for a while, replicas that say "not found" for orders they
hold, forged callbacks (badly signed, and for juhe validly signed with the status flipped),
throttling; a reconciler sweeping all along. Every fault drawn is checked to have happened.

Once everything has settled (the clock moved past `reconcile_after` and `not_found_grace` only
while nothing is in flight), every order is audited against the suppliers' ledgers: no account
charged twice, each `succeeded` or `partial` order charged exactly once where it says (with the
supplier's id and price), each `failed` one not at all, and nothing left processing unless sent
to manual review, which only a few may be. Nothing a shop can read, and no log line, holds a
supplier credential, a signed query string or a supplier's host and port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
import pytest
from structlog.testing import capture_logs

from gateway.order import Reason
from gateway.simulator.faults import Fault
from tests.e2e.fleet import FINAL, NotificationSink, audit, place_until_answered, read_orders, seeds, tally
from tests.e2e.harness import Deployment, Gateway, SupplierSpec
from tests.e2e.test_protocols import PROTOCOLS, offers

ORDERS: Final = 300
CONCURRENCY: Final = 24
# Each supplier's own mix of faults; every rate is per submit.
KNOBS: Final[dict[str, dict[str, Any]]] = {
    "fulu": {
        "latency": 0.01,
        "result_after": 0.05,
        "success_rate": 0.9,
        "refuse_rate": 0.03,
        "hang_rate": 0.05,
        "hang_charges": True,
        "error_rate": 0.05,
        "garbage_rate": 0.04,
        "callback_drop_rate": 0.25,
        "callback_duplicate_rate": 0.2,
        "callback_delay": 0.1,
        "reset_rate": 0.04,
        "lagging_rate": 0.15,
        "lag_for": 3.0,  # below not_found_grace, on the gateway's clock: the one lie the rule allows for
        "forged_callback_rate": 0.1,
    },
    "ofpay": {
        "latency": 0.02,
        "result_after": 0.1,
        "success_rate": 0.9,
        "refuse_rate": 0.03,
        "hang_rate": 0.05,
        "hang_charges": False,
        "error_rate": 0.04,
        "garbage_rate": 0.05,
        "callback_drop_rate": 0.2,
        "callback_duplicate_rate": 0.25,
        "callback_delay": 0.3,
        "reset_rate": 0.05,
        "crash_rate": 0.02,
        "refuse_for": 0.3,
    },
    "juhe": {
        "latency": 0.01,
        "result_after": 0.08,
        "success_rate": 0.92,
        "refuse_rate": 0.02,
        "hang_rate": 0.04,
        "hang_charges": True,
        "error_rate": 0.05,
        "garbage_rate": 0.05,
        "callback_drop_rate": 0.3,
        "callback_duplicate_rate": 0.2,
        "callback_delay": 0.05,
        "reset_rate": 0.04,
        "forged_callback_rate": 0.2,  # validly signed failures of successes: only a query may decide
        "max_requests_per_second": 150.0,
    },
    "dayuanren": {
        "latency": 0.02,
        "result_after": 0.15,
        "success_rate": 0.9,
        "partial_rate": 0.3,
        "refuse_rate": 0.03,
        "hang_rate": 0.05,
        "hang_charges": False,
        "error_rate": 0.04,
        "garbage_rate": 0.04,
        "callback_drop_rate": 0.2,
        "callback_duplicate_rate": 0.3,
        "callback_delay": 0.2,
        "crash_rate": 0.02,
        "refuse_for": 0.3,
        "lagging_rate": 0.2,
        "lag_for": 3.0,
        "forged_callback_rate": 0.1,
    },
}
# Every fault some supplier draws above, and the rate knob that draws it.
FAULT_KNOBS: Final = {
    Fault.RESET: "reset_rate",
    Fault.CRASH: "crash_rate",
    Fault.LAG: "lagging_rate",
    Fault.FORGED_CALLBACK: "forged_callback_rate",
}
# Orders an operator must look at: only those whose supplier crashed or reset before answering
# and then could not be asked in time; a handful at most.
MAX_MANUAL_REVIEW_SHARE: Final = 0.03
ORDER_SETTINGS: Final = {"max_attempts": 2, "reconcile_after": "2s", "not_found_grace": "5s"}
# Moving the clock this far makes every open attempt due for a query and every "not found" final.
ADVANCE_SECONDS: Final = 6.0
NOTIFY: Final = {"timeout": "1s", "backoff": {"initial": "200ms", "max": "1s"}}
# Breakers never open here (no supplier sees 1,000 calls in a window): the faults above stay below
# their failure rate, so only a loaded machine's own slowness, its calls timing out, would open them,
# and which suppliers then get the orders, and so which faults are drawn, would follow the machine.
# Breakers are tested on their own in test_resilience.py.
ROOMY: Final = {
    "rate_limit": {"rate": 1000, "per": "1s", "burst": 200, "max_wait": "250ms"},
    "breaker": {"min_calls": 1000},
}
# Rounds move the test's clock but take only about 0.1 s of real time each, while the simulators'
# request caps count real seconds: a confirming query throttled round after round can route an order
# on only in a late round, and its new attempt needs rounds of its own. The loop stops once settled.
SETTLE_ROUNDS: Final = 40
# Guards against a hang, not measures of speed: the whole run takes about 3 s on a quiet machine
# and about 10 s with six busy loops on its two cores.
PLACE_WITHIN_SECONDS: Final = 90.0
RUN_WITHIN_SECONDS: Final = 180.0


async def _quiet(d: Deployment, within: float = 30.0) -> None:
    """Until no request is out at any supplier, for a few polls in a row.

    The clock may jump only then: an attempt still on its way must never look older than the
    grace. Callbacks still to come may land after the jump, as late callbacks do.
    """
    async with asyncio.timeout(within):
        calm = 0
        while calm < 3:
            await asyncio.sleep(0.03)
            busy = any(supplier.inflight for supplier in d.runtime.suppliers.values())
            calm = 0 if busy else calm + 1


@contextlib.asynccontextmanager
async def _sweeping(d: Deployment, every: float = 0.1) -> AsyncIterator[None]:
    """The reconciler's loop, faster: queries race submits, callbacks and each other.

    Stopped between sweeps, never cancelled inside one: a query cut off there would keep its
    supplier's in-flight slot, as it does at shutdown, and `_quiet` would wait for it forever.
    """
    stop = asyncio.Event()

    async def sweep() -> None:
        while not stop.is_set():
            await d.runtime.reconciler.sweep()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()

    task = asyncio.create_task(sweep())
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds("CHAOS_SEEDS", [3, 17, 42]))
async def test_chaos_never_charges_twice_and_settles_every_order(gateway: Gateway, seed: int) -> None:
    sink = NotificationSink()
    notify_url = await sink.start()
    stack = contextlib.ExitStack()
    try:
        d = await gateway(
            {
                name: SupplierSpec(
                    protocol=name,
                    credentials=dict(PROTOCOLS[name]["credentials"]),
                    knobs={**knobs, "seed": seed * 100 + index},
                    timeout="300ms",
                    extra=dict(ROOMY),
                )
                for index, (name, knobs) in enumerate(KNOBS.items())
            },
            offers(*((name, name) for name in KNOBS)),
            routing="weighted",
            orders=ORDER_SETTINGS,
            notify=NOTIFY,
        )
        accepted: dict[str, dict[str, Any]] = {}
        slots = asyncio.Semaphore(CONCURRENCY)
        logs = stack.enter_context(capture_logs())

        async def place(number: int) -> None:
            order: dict[str, Any] = {
                "order_id": f"X{seed}-{number:04d}",
                "product": "mobile.cmcc.50",
                "account": f"138{number:08d}",  # one account per order: a double charge shows
                "notify_url": notify_url,
                "wait_seconds": 0,
            }
            async with slots:
                answered = await place_until_answered(d.shop, order, within=PLACE_WITHIN_SECONDS)
                accepted[order["order_id"]] = answered[1]

        started = time.monotonic()
        async with asyncio.timeout(RUN_WITHIN_SECONDS):
            async with _sweeping(d):
                await asyncio.gather(*(place(number) for number in range(ORDERS)))
            await _quiet(d)
            for _ in range(SETTLE_ROUNDS):
                processing = await d.runtime.store.processing_orders()
                if all(order.reason is Reason.MANUAL_REVIEW for order in processing):
                    break
                d.clock.advance(ADVANCE_SECONDS)
                await d.runtime.reconciler.sweep()
                await _quiet(d)
            for simulator in d.simulators.values():
                await simulator.idle()  # every charge final and every callback sent, for the audit
            while any(order_id not in sink.received for order_id in accepted):
                finished = await read_orders(d.shop, (o for o in accepted if o not in sink.received))
                if not any(order is not None and order["status"] in FINAL for order in finished.values()):
                    break  # what is left will never be notified: the audit says why
                await asyncio.sleep(0.1)
            await d.runtime.notifier.idle()
            orders = await read_orders(d.shop, accepted)

        problems = audit(
            orders,
            {name: simulator.ledger for name, simulator in d.simulators.items()},
            notified=sink.received,
            may_stay_processing=frozenset({Reason.MANUAL_REVIEW.value}),
        )
        attempts = [a for order in orders.values() if order is not None for a in order["attempts"]]
        faults = {
            "not charged": sum(not e.charged for s in d.simulators.values() for e in s.ledger.entries()),
            "failovers": sum(len(o["attempts"]) > 1 for o in orders.values() if o is not None),
            "callbacks": sum(e.callbacks_sent for s in d.simulators.values() for e in s.ledger.entries()),
        }
        drawn = {
            fault: sum(len(s.ledger.with_fault(fault)) for s in d.simulators.values())
            for fault in FAULT_KNOBS
        }
        report = (
            f"seed {seed}: {len(accepted)} orders in {time.monotonic() - started:.1f}s,"
            f" {len(attempts)} attempts, {faults}, faults {dict(drawn)}, outcomes {tally(orders)}"
        )
        print(report)
        assert problems == [], f"{report}\n" + "\n".join(problems[:50])
        # The faults really happened, or the run proved less than it claims.
        assert all(count > 0 for count in drawn.values()), report
        forged = sum(e.forged_callbacks_sent for s in d.simulators.values() for e in s.ledger.entries())
        assert forged > 0, report
        reviews = sum(1 for o in orders.values() if o is not None and o["reason"] == "manual_review")
        assert reviews <= MAX_MANUAL_REVIEW_SHARE * len(accepted), report
        # Nothing secret reached a shop or a log line: no supplier credential, no signed query string.
        stack.close()
        shop_visible = [orjson.dumps(o) for o in (*accepted.values(), *orders.values()) if o is not None]
        shop_visible += sink.bodies
        logged = [repr(entry).encode() for entry in logs]
        secrets = [
            value.encode()
            for name in KNOBS
            for value in PROTOCOLS[name]["credentials"].values()
            if len(value) >= 6  # ids such as userid 10001 are not secrets, and would match by chance
        ]
        for text in (*shop_visible, *logged):
            leaked = [s for s in (*secrets, b"sign=", b"userpws=", b"key=") if s in text]
            assert not leaked, f"{leaked} in {text[:300]!r}"
        ports = [
            listener.url.rsplit(":", 1)[1].encode() for s in d.simulators.values() for listener in s.listeners
        ]
        for body in shop_visible:
            assert not any(b"127.0.0.1:" + port in body for port in ports), body[:300]
    finally:
        stack.close()
        await sink.close()
