"""`GET /admin/stats` (CONTRACT.md §9) and `gateway_order_cost_total` (§12) against the simulators' ledgers.

Real sockets: orders go through the shop API to simulated suppliers that keep their own books; the
gateway's figures must match what the suppliers say they charged and delivered.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from aiohttp import ClientSession

from gateway.money import format_money
from gateway.simulator import ChargeState, Simulator
from gateway.stats import CHINA
from tests.e2e.harness import Deployment, Gateway
from tests.e2e.test_contract_admin import AUTH
from tests.e2e.test_contract_metrics import of
from tests.e2e.test_operations import admin_url, scrape
from tests.e2e.test_protocols import offers, spec

ROW_FIELDS = {
    "key",
    "orders",
    "succeeded",
    "failed",
    "partial",
    "processing",
    "success_rate",
    "face_value",
    "delivered_value",
    "cost",
    "latency_p50_seconds",
}
ORDERS = 24


async def stats(d: Deployment, **query: str) -> tuple[int, Any]:
    async with (
        ClientSession() as session,
        session.get(admin_url(d) + "/admin/stats", params=query, headers=AUTH) as response,
    ):
        return response.status, await response.json()


def ledger_row(simulator: Simulator) -> dict[str, Any]:
    """What a supplier's own book says it delivered and charged for the gateway's orders."""
    delivering = [
        e for e in simulator.ledger.charges() if e.state in (ChargeState.SUCCEEDED, ChargeState.PARTIAL)
    ]
    states = Counter(e.state for e in delivering)
    delivered = sum(
        (e.face_value_cents or 0) * e.quantity if e.state is ChargeState.SUCCEEDED else e.delivered_cents or 0
        for e in delivering
    )
    return {
        "orders": len(delivering),
        "succeeded": states[ChargeState.SUCCEEDED],
        "partial": states[ChargeState.PARTIAL],
        "delivered_value": format_money(delivered),
        "cost": format_money(sum(e.cost_cents or 0 for e in delivering)),
    }


@pytest.fixture
async def busy(gateway: Gateway) -> Deployment:
    """A day of two suppliers: `dyr` fails some orders (they move on to `spare`) and delivers some in part."""
    d = await gateway(
        {
            # Seeded: every run draws the same fates, failures and partial deliveries among them.
            "dyr": spec("dayuanren", success_rate=0.6, partial_rate=0.4, result_after=0.01, seed=7),
            "spare": spec("fulu", result_after=0.01),
        },
        offers(("dyr", "dayuanren"), ("spare", "fulu")),
    )
    quantities = [1 + i % 3 for i in range(ORDERS)]
    placed = await asyncio.gather(
        *(d.shop.place(order_id=f"S-{i}", quantity=q, wait_seconds=5) for i, q in enumerate(quantities))
    )
    assert all(status in (200, 201, 202) for status, _ in placed), placed
    for i in range(ORDERS):
        await d.shop.wait_for(f"S-{i}", lambda o: o["status"] != "processing")
    return d


async def test_figures_by_supplier_match_the_suppliers_ledgers(busy: Deployment) -> None:
    status, body = await stats(busy)

    assert status == 200, body
    rows = {row["key"]: row for row in body["rows"]}
    assert set(rows) == {"dyr", "spare"}
    for name, row in rows.items():
        assert set(row) == ROW_FIELDS
        expected = ledger_row(busy.simulators[name])
        assert {k: row[k] for k in expected} == expected, name
        assert row["failed"] == row["processing"] == 0  # spare delivers whatever dyr fails
        assert row["success_rate"] == 1.0
        assert row["latency_p50_seconds"] is not None
        assert row["latency_p50_seconds"] >= 0
    assert sum(r["orders"] for r in rows.values()) == ORDERS
    # the mix this test is about did happen: failovers and partial deliveries
    assert rows["spare"]["orders"] > 0
    assert rows["dyr"]["partial"] > 0


async def test_figures_by_product_and_shop_add_up_to_the_same_totals(busy: Deployment) -> None:
    _, by_supplier = await stats(busy, by="supplier")
    for by, key in (("product", "mobile.cmcc.50"), ("shop", "demo")):
        status, body = await stats(busy, by=by)
        assert status == 200, body
        [row] = body["rows"]
        assert row["key"] == key
        assert row["orders"] == ORDERS
        assert row["face_value"] == format_money(5000 * sum(1 + i % 3 for i in range(ORDERS)))
        for money in ("delivered_value", "cost"):
            total = sum(round(float(r[money]) * 100) for r in by_supplier["rows"])
            assert row[money] == format_money(total), money


async def test_order_cost_total_counts_what_the_suppliers_charged(busy: Deployment) -> None:
    samples = await scrape(busy)

    for name in ("dyr", "spare"):
        expected = float(ledger_row(busy.simulators[name])["cost"])
        counted = of(samples, "gateway_order_cost_total", supplier=name, product="mobile.cmcc.50")
        assert counted == pytest.approx(expected), name


async def test_the_window_defaults_to_today_in_china_and_other_days_are_empty(busy: Deployment) -> None:
    _, today = await stats(busy)
    assert sum(r["orders"] for r in today["rows"]) == ORDERS
    now = datetime.fromtimestamp(busy.clock.now(), CHINA)
    start = datetime.fromisoformat(today["from"].replace("Z", "+00:00")).astimezone(CHINA)
    assert (start.hour, start.minute, start.date()) == (0, 0, now.date())

    status, body = await stats(busy, **{"from": "2020-01-01", "to": "2020-01-02"})
    assert (status, body["rows"]) == (200, [])
    status, explicit = await stats(busy, **{"from": today["from"], "to": today["to"]})
    assert (status, explicit) == (200, today)
    status, body = await stats(busy, **{"from": "2026-01-01", "to": "2026-06-01"})  # over a quarter
    assert status == 400
    assert body["error"]["details"] == [{"field": "to", "message": "must be at most 92 days after from"}]


async def test_bad_parameters_are_refused_with_a_detail_per_field(gateway: Gateway) -> None:
    d = await gateway({"main": spec("fulu")}, offers(("main", "fulu")))

    status, body = await stats(
        d, **{"from": "yesterday", "to": "2026-11-22T10:00:00", "by": "colour", "x": "1"}
    )

    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert {p["field"] for p in body["error"]["details"]} == {"from", "to", "by", "x"}

    status, body = await stats(d, **{"from": "2026-11-23", "to": "2026-11-22"})
    assert status == 400
    assert [p["field"] for p in body["error"]["details"]] == ["to"]


async def test_stats_needs_the_admin_token(gateway: Gateway) -> None:
    d = await gateway({"main": spec("fulu")}, offers(("main", "fulu")))

    async with ClientSession() as session, session.get(admin_url(d) + "/admin/stats") as response:
        assert response.status == 401


async def test_notifications_pending_counts_the_outbox(gateway: Gateway) -> None:
    d = await gateway({"main": spec("fulu")}, offers(("main", "fulu")))
    # Nobody listens there: the notice is tried once, then waits for its retry.
    _, order = await d.shop.place(order_id="N-1", notify_url="http://127.0.0.1:9/hook", wait_seconds=5)
    assert order["status"] == "succeeded"
    await d.runtime.notifier.idle()

    assert of(await scrape(d), "gateway_notifications_pending") == 1
