"""`routing: adaptive` end to end: the healthier, faster, cheaper supplier first; the others explored.

Deterministic: the gateway's random source is reseeded before each measured run (`Runtime.rng` is the one
the router draws from), health scores are refreshed by moving the injected clock, never by sleeping, and
every share is checked against bounds far from what the seed gives.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import ClientSession

from gateway.routing import EXPLORE_SHARE, SCORE_TTL_SECONDS
from gateway.suppliers import HEALTH_WINDOW_SECONDS
from tests.e2e.harness import Deployment, Gateway, SupplierSpec
from tests.e2e.test_operations import admin_url

SEED = 20261122
RUN = 200  # orders per measured run: 5 % exploring is about 10 of them
REFRESH_EVERY = 20  # orders between two moves of the clock past the router's score cache


def offer(supplier: str, cost: str) -> dict[str, Any]:
    return {"supplier": supplier, "sku": "18221081", "cost": cost}


async def place_run(
    d: Deployment, tag: str, n: int = RUN, *, ending: str = "succeeded"
) -> list[dict[str, Any]]:
    """`n` orders one after another, each waited for to its end; the clock passes the score cache
    every REFRESH_EVERY orders, so what the router learnt from the last ones is what it routes by."""
    orders = []
    for i in range(n):
        if i and i % REFRESH_EVERY == 0:
            d.clock.advance(SCORE_TTL_SECONDS + 0.1)
        status, order = await d.shop.place(order_id=f"{tag}-{i}", wait_seconds=5)
        assert status == 201, order
        assert order["status"] in ("succeeded", ending), order
        orders.append(order)
    d.clock.advance(SCORE_TTL_SECONDS + 0.1)
    return orders


def first_choices(orders: list[dict[str, Any]]) -> Counter[str]:
    return Counter(order["attempts"][0]["supplier"] for order in orders)


def trail(order: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["supplier"], a["outcome"]) for a in order["attempts"]]


def assert_explored(count: int, n: int = RUN) -> None:
    """About EXPLORE_SHARE of `n`: at least once, and nowhere near a fair share."""
    assert 1 <= count <= 3 * EXPLORE_SHARE * n, count


async def warm_up(d: Deployment, tag: str, *, ending: str = "succeeded") -> None:
    """A few orders so each supplier has a record, then past the score cache."""
    await place_run(d, tag, n=REFRESH_EVERY, ending=ending)
    d.runtime.rng.seed(SEED)


async def switch(d: Deployment, supplier: str, action: str) -> None:
    """`disable` or `enable` a supplier through the admin API, as an operator does."""
    async with (
        ClientSession() as session,
        session.post(
            f"{admin_url(d)}/admin/suppliers/{supplier}/{action}",
            headers={"Authorization": "Bearer admin-token"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def warm_up_alone(d: Deployment, suppliers: list[str]) -> None:
    """Each supplier in turn serves a few orders alone, so every one has a record (latencies included)
    before the run: an untried supplier's prior alone would say nothing about its speed."""
    for serving in suppliers:
        for other in suppliers:
            await switch(d, other, "enable" if other == serving else "disable")
        await place_run(d, f"WARM-{serving}", n=REFRESH_EVERY // 2)
    for supplier in suppliers:
        await switch(d, supplier, "enable")
    async with asyncio.timeout(10):  # replies still on their way add their latencies when they come
        while True:
            if not any(d.runtime.suppliers[name].inflight for name in suppliers):
                break
            await asyncio.sleep(0.02)
    d.clock.advance(SCORE_TTL_SECONDS + 0.1)
    d.runtime.rng.seed(SEED)


async def test_adaptive_prefers_the_supplier_that_delivers_and_still_explores_the_other(
    gateway: Gateway,
) -> None:
    # Listed first at the same cost: with no record yet it goes first, so any preference is learnt.
    d = await gateway(
        {"sick": SupplierSpec(knobs={"refuse_rate": 1.0}), "well": SupplierSpec()},
        [offer("sick", "49.30"), offer("well", "49.30")],
        routing="adaptive",
    )
    await warm_up(d, "WARM")
    orders = await place_run(d, "RUN")
    chosen = first_choices(orders)
    assert chosen["well"] >= RUN - 3 * EXPLORE_SHARE * RUN, chosen
    assert_explored(chosen["sick"])
    for order in orders:  # an explored order still ends well: the refusal charged nothing
        expected = [("well", "succeeded")]
        if order["attempts"][0]["supplier"] == "sick":
            expected = [("sick", "not_executed"), *expected]
        assert trail(order) == expected, order


async def test_adaptive_learns_from_declines_reported_after_acceptance(gateway: Gateway) -> None:
    """A supplier that accepts every order and then declines it by callback delivers nothing.

    Its record must say so: an acceptance is not a success. Both suppliers answer every submit at
    once with "processing"; only the callbacks tell them apart. One attempt per order, so neither
    supplier's record grows from the other's orders (a failover would give "well" a call on every
    order, and the preference would come from that alone).
    """
    d = await gateway(
        {"decliner": SupplierSpec(knobs={"success_rate": 0.0}), "well": SupplierSpec()},
        [offer("decliner", "49.30"), offer("well", "49.30")],
        routing="adaptive",
        orders={"max_attempts": 1},
    )
    await warm_up(d, "WARM", ending="failed")
    orders = await place_run(d, "RUN", ending="failed")
    for order in orders:
        expected = "failed" if order["attempts"][0]["supplier"] == "decliner" else "succeeded"
        assert (order["status"], len(order["attempts"])) == (expected, 1), order
    chosen = first_choices(orders)
    assert chosen["well"] >= RUN - 3 * EXPLORE_SHARE * RUN, chosen
    assert_explored(chosen["decliner"])


async def test_adaptive_prefers_the_faster_supplier(gateway: Gateway) -> None:
    n = 100  # an explored order waits for the slow supplier's replies: keep the run short
    d = await gateway(
        {"slow": SupplierSpec(knobs={"latency": 0.2}), "fast": SupplierSpec()},
        [offer("slow", "49.30"), offer("fast", "49.30")],
        routing="adaptive",
    )
    await warm_up_alone(d, ["slow", "fast"])
    orders = await place_run(d, "RUN", n=n)
    chosen = first_choices(orders)
    assert chosen["fast"] >= n - 3 * EXPLORE_SHARE * n, chosen
    assert_explored(chosen["slow"], n)
    assert all(len(order["attempts"]) == 1 for order in orders)  # both deliver: only speed differs


async def test_adaptive_prefers_the_cheaper_of_two_healthy_suppliers(gateway: Gateway) -> None:
    d = await gateway(
        {"dear": SupplierSpec(), "cheap": SupplierSpec()},
        [offer("dear", "49.30"), offer("cheap", "47.00")],
        routing="adaptive",
    )
    d.runtime.rng.seed(SEED)
    orders = await place_run(d, "RUN")
    chosen = first_choices(orders)
    assert chosen["cheap"] >= RUN - 3 * EXPLORE_SHARE * RUN, chosen
    assert_explored(chosen["dear"])


async def test_a_sick_supplier_that_recovers_gets_traffic_again(gateway: Gateway) -> None:
    d = await gateway(
        {"cheap": SupplierSpec(knobs={"refuse_rate": 1.0}), "dear": SupplierSpec()},
        [offer("cheap", "47.00"), offer("dear", "49.30")],
        routing="adaptive",
    )
    await warm_up(d, "WARM")
    n = RUN // 2
    sick = await place_run(d, "SICK", n)
    chosen = first_choices(sick)
    assert chosen["dear"] >= n - 3 * EXPLORE_SHARE * n, chosen  # cheaper, but it delivers nothing
    assert_explored(chosen["cheap"], n)
    for order in sick:
        if order["attempts"][0]["supplier"] == "cheap":
            assert trail(order) == [("cheap", "not_executed"), ("dear", "succeeded")], order

    simulator = d.simulators["cheap"]
    simulator.knobs = simulator.knobs.model_copy(update={"refuse_rate": 0.0})
    # Its refusals are still in the health window: exploring is what sends it orders, and they land.
    recovering = await place_run(d, "BACK")
    explored = [o for o in recovering if o["attempts"][0]["supplier"] == "cheap"]
    assert_explored(len(explored))
    assert all(trail(o) == [("cheap", "succeeded")] for o in explored), explored

    d.clock.advance(HEALTH_WINDOW_SECONDS)  # the refusals age out of the window
    recovered = await place_run(d, "AGAIN", n)
    chosen = first_choices(recovered)
    assert chosen["cheap"] >= n - 3 * EXPLORE_SHARE * n, chosen
    assert all(trail(o) == [("cheap", "succeeded")] for o in recovered if o["supplier"] == "cheap")
