"""Rate limits, concurrency caps, breakers and throttling, end to end against simulated suppliers.

The three scenarios of the resilience issue: a rush against a limited supplier, a supplier turning
slow and recovering, and a supplier refusing connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession
from aiohttp.test_utils import unused_port

from gateway.app import admin_address
from gateway.breaker import CircuitState
from tests.e2e.harness import SEND_JITTER_SECONDS, Deployment, Gateway, SupplierSpec, after_balance_reads
from tests.e2e.test_contract_metrics import of
from tests.e2e.test_operations import scrape

FAST_BREAKER = {
    "window": "10s",
    "min_calls": 5,
    "failure_rate": 0.5,
    "slow_call": "500ms",
    "slow_call_rate": 0.5,
    "open_for": "2s",
    "max_open_for": "10s",
    "half_open_calls": 2,
}


def suppliers_of(order: dict[str, Any]) -> list[str]:
    return [attempt["supplier"] for attempt in order["attempts"]]


async def test_a_rush_never_exceeds_the_suppliers_limit(gateway: Gateway) -> None:
    limit = {"rate": 20, "per": "1s", "burst": 5, "max_wait": "250ms"}
    roomy = {"rate": 1000, "per": "1s", "burst": 200, "max_wait": "1s"}
    d = await gateway(
        {
            "limited": SupplierSpec(extra={"rate_limit": limit}),
            "spare": SupplierSpec(extra={"rate_limit": roomy}),
        }
    )
    results = await asyncio.gather(*(d.shop.place(order_id=f"RUSH-{i}", wait_seconds=5) for i in range(150)))

    assert all(status == 201 for status, _ in results)
    assert all(order["status"] == "succeeded" for _, order in results)
    limited = d.simulators["limited"].requests
    # The limit is kept where requests are admitted; each leaves a moment later, and on a loaded machine
    # some later than others: a window a little shorter than `per` takes that out (as in test_instances).
    assert limited.max_in_window(1.0 - SEND_JITTER_SECONDS) <= 25
    assert len(limited) >= 6  # it did get its burst and its pace
    served_by = [suppliers_of(order)[-1] for _, order in results]
    assert served_by.count("limited") == len(limited)
    assert served_by.count("spare") == 150 - len(limited)
    assert all(len(order["attempts"]) == 1 for _, order in results)  # skipped locally, never tried


async def test_a_slow_supplier_is_cut_off_then_gets_traffic_back(gateway: Gateway) -> None:
    d = await gateway(
        {
            "slow": SupplierSpec(knobs={"latency": 3.0}, timeout="5s", extra={"breaker": FAST_BREAKER}),
            "fast": SupplierSpec(),
        }
    )
    slow = d.runtime.suppliers["slow"]
    first = await asyncio.gather(*(d.shop.place(order_id=f"S-{i}", wait_seconds=5) for i in range(5)))
    assert all(suppliers_of(order) == ["slow"] for _, order in first)
    assert all(order["status"] == "succeeded" for _, order in first)  # slow, not failing
    await drained(d, "slow")  # the callbacks came first; the slow replies are what the breaker judges
    assert slow.circuit is CircuitState.OPEN

    later = await asyncio.gather(*(d.shop.place(order_id=f"F-{i}", wait_seconds=5) for i in range(10)))
    assert all(suppliers_of(order) == ["fast"] for _, order in later)
    assert all(order["status"] == "succeeded" for _, order in later)
    assert len(d.simulators["slow"].requests) == 5

    simulator = d.simulators["slow"]
    simulator.knobs = simulator.knobs.model_copy(update={"latency": 0.0})
    d.clock.advance(slow.breaker.open_remaining() + 0.01)
    assert slow.circuit is CircuitState.HALF_OPEN
    back = [await d.shop.place(order_id=f"B-{i}", wait_seconds=5) for i in range(4)]
    assert [suppliers_of(order) for _, order in back] == [["slow"]] * 4
    assert slow.circuit is CircuitState.CLOSED


async def test_a_supplier_refusing_connections_is_skipped_once_its_breaker_opens(gateway: Gateway) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    breaker = {**FAST_BREAKER, "min_calls": 3, "open_for": "30s", "max_open_for": "60s"}
    d = await gateway({"dead": SupplierSpec(url=dead, extra={"breaker": breaker}), "live": SupplierSpec()})
    for i in range(3):
        _, order = await d.shop.place(order_id=f"D-{i}", wait_seconds=5)
        assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
            ("dead", "not_executed"),
            ("live", "succeeded"),
        ]
    assert d.runtime.suppliers["dead"].circuit is CircuitState.OPEN
    for i in range(5):
        _, order = await d.shop.place(order_id=f"L-{i}", wait_seconds=5)
        assert suppliers_of(order) == ["live"]  # not even a connect attempt
    assert await admin_state(d, "dead") == "open"
    metrics = await scrape(d)
    assert metrics["gateway_supplier_circuit_state", (("supplier", "dead"),)] == 2
    assert metrics["gateway_supplier_up", (("supplier", "dead"),)] == 0
    assert metrics["gateway_supplier_up", (("supplier", "live"),)] == 1


async def test_every_offer_open_means_503_with_retry_after_and_nothing_recorded(gateway: Gateway) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    breaker = {**FAST_BREAKER, "min_calls": 2, "open_for": "30s", "max_open_for": "60s"}
    d = await gateway({"dead": SupplierSpec(url=dead, extra={"breaker": breaker})})
    for i in range(2):
        _, order = await d.shop.place(order_id=f"X-{i}", wait_seconds=5)
        assert (order["status"], order["reason"]) == ("failed", "no_supplier_available")
    status, body, headers = await d.shop.post_raw(
        b'{"order_id":"X-9","product":"mobile.cmcc.50","account":"13800138000"}'
    )
    assert status == 503
    assert body["error"]["code"] == "no_supplier_available"
    assert 25 <= int(headers["Retry-After"]) <= 34
    assert (await d.shop.get("X-9"))[0] == 404
    # A retry of an order accepted earlier still gets that order.
    again, order = await d.shop.place(order_id="X-0")
    assert (again, order["status"]) == (200, "failed")


async def test_a_throttling_supplier_is_paused_not_hammered(gateway: Gateway) -> None:
    juhe = SupplierSpec(
        protocol="juhe",
        credentials={"key": "demo-key", "openid": "demo-openid"},
        # Two a second: the first order's submit and the query that confirms its callback (juhe
        # does not sign a callback's result), then the next submit is throttled.
        knobs={"max_requests_per_second": 2.0},
    )
    offers = [
        {"supplier": "juhe", "sku": "50", "cost": "49.25", "priority": 1},
        {"supplier": "spare", "sku": "18221081", "cost": "49.30", "priority": 2},
    ]
    d = await gateway({"juhe": juhe, "spare": SupplierSpec()}, offers)
    await after_balance_reads(d, advance=1)  # the balance read is a request its throttle counts
    served = []
    for i in range(4):
        _, order = await d.shop.place(order_id=f"T-{i}", wait_seconds=5)
        assert order["status"] == "succeeded"
        served.append([(a["supplier"], a["outcome"]) for a in order["attempts"]])
    assert served[0] == [("juhe", "succeeded")]
    assert served[1] == [("juhe", "not_executed"), ("spare", "succeeded")]  # 10012: throttled
    assert served[2:] == [[("spare", "succeeded")]] * 2  # paused: not asked again for now
    # The first order's submit and its confirming query, then the throttled submit: no more.
    assert len(d.simulators["juhe"].requests) == 3


async def test_a_saturated_supplier_is_skipped(gateway: Gateway) -> None:
    d = await gateway(
        {"narrow": SupplierSpec(knobs={"latency": 0.5}, extra={"max_concurrency": 1}), "wide": SupplierSpec()}
    )
    await after_balance_reads(d)  # the balance read held narrow's one connection for its latency
    results = await asyncio.gather(*(d.shop.place(order_id=f"C-{i}", wait_seconds=5) for i in range(3)))
    served = sorted(suppliers_of(order)[0] for _, order in results)
    assert served == ["narrow", "wide", "wide"]
    assert all(len(order["attempts"]) == 1 for _, order in results)


async def test_an_offer_free_now_comes_before_waiting_for_a_better_one(gateway: Gateway) -> None:
    # "best" is the first offer but has no slot free now (its burst of one is spent); it would have
    # one within max_wait. "next" has room: orders go there at once instead of queueing for "best".
    limit = {"rate": 1, "per": "2s", "burst": 0, "max_wait": "5s"}
    d = await gateway(
        {
            "best": SupplierSpec(extra={"rate_limit": limit, "balance": {"check_every": "1h"}}),
            "next": SupplierSpec(extra={"max_concurrency": 2}),
        }
    )
    await after_balance_reads(d, advance=2)
    _, first = await d.shop.place(order_id="P-1", wait_seconds=5)
    assert suppliers_of(first) == ["best"]  # its slot was free
    results = await asyncio.gather(*(d.shop.place(order_id=f"P-{i}", wait_seconds=5) for i in (2, 3)))
    assert [suppliers_of(order) for _, order in results] == [["next"], ["next"]]
    m = await scrape(d)
    assert of(m, "gateway_supplier_rate_limited_total", supplier="best", result="waited") == 0
    assert of(m, "gateway_supplier_rate_limited_total", supplier="best", result="rejected") == 0


async def test_when_no_offer_is_free_now_the_order_waits_for_the_first_slot(gateway: Gateway) -> None:
    limit = {"rate": 1, "per": "1s", "burst": 0, "max_wait": "3s"}
    d = await gateway(
        {
            "best": SupplierSpec(extra={"rate_limit": limit, "balance": {"check_every": "1h"}}),
            "busy": SupplierSpec(knobs={"latency": 1.0}, extra={"max_concurrency": 1}),
        }
    )
    await after_balance_reads(d, advance=1)
    _, first = await d.shop.place(order_id="W-1", wait_seconds=5)
    assert suppliers_of(first) == ["best"]
    # "busy" is saturated by a slow order; "best" has a slot a second from now: the order waits for it.
    slow = asyncio.ensure_future(d.shop.place(order_id="W-2", wait_seconds=5))
    for _ in range(200):
        if d.runtime.suppliers["busy"].inflight or slow.done():
            break
        await asyncio.sleep(0.01)
    _, waited = await d.shop.place(order_id="W-3", wait_seconds=5)
    assert suppliers_of(waited) == ["best"]
    assert suppliers_of((await slow)[1]) == ["busy"]
    m = await scrape(d)
    assert of(m, "gateway_supplier_rate_limited_total", supplier="best", result="waited") == 1


async def test_reconciliation_queries_take_rate_limit_slots_too(gateway: Gateway) -> None:
    # One request a minute: the next slot is further away than even a query waits in line for.
    limit = {"rate": 1, "per": "60s", "burst": 0, "max_wait": "0s"}
    d = await gateway(
        {
            "one": SupplierSpec(
                knobs={"error_rate": 1.0, "callback_drop_rate": 1.0},
                extra={"rate_limit": limit, "balance": {"check_every": "1h"}},
            )
        }
    )
    await after_balance_reads(d, advance=60)  # past the slot the start-up balance read took
    _, order = await d.shop.place(order_id="Q-1", wait_seconds=1)
    assert order["reason"] == "outcome_unknown"
    assert (await d.runtime.reconciler.sweep()).queried == 0
    assert len(d.simulators["one"].requests) == 1  # the submit used the only slot: the query waits
    d.clock.advance(60)
    await d.runtime.reconciler.sweep()
    assert len(d.simulators["one"].requests) == 2
    assert (await d.shop.get("Q-1"))[1]["status"] == "succeeded"


async def drained(d: Deployment, supplier: str) -> None:
    async with asyncio.timeout(10):
        while True:
            if not d.runtime.suppliers[supplier].inflight:
                return
            await asyncio.sleep(0.02)


async def admin_state(d: Deployment, supplier: str) -> str:
    host, port = admin_address(d.app)
    async with (
        ClientSession() as session,
        session.get(
            f"http://{host}:{port}/admin/suppliers", headers={"Authorization": "Bearer admin-token"}
        ) as response,
    ):
        body = await response.json()
    return next(s["state"] for s in body["suppliers"] if s["name"] == supplier)  # type: ignore[no-any-return]
