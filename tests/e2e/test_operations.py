"""The admin listener (health, readiness, metrics, supplier switches) and restarts on SQLite."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import admin_address
from gateway.lifecycle import start_attempt
from gateway.order import Order, OrderRequest
from gateway.store import open_store
from tests.e2e.harness import Deployment, Gateway, SupplierSpec


def admin_url(d: Deployment) -> str:
    host, port = admin_address(d.app)
    return f"http://{host}:{port}"


async def scrape(d: Deployment) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with ClientSession() as session, session.get(admin_url(d) + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def test_health_and_readiness(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    async with ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(admin_url(d) + path) as response:
                assert response.status == 200, path


async def test_metrics_count_orders_requests_and_callbacks(gateway: Gateway) -> None:
    d = await gateway({"first": SupplierSpec(knobs={"refuse_rate": 1.0}), "second": SupplierSpec()})
    for _ in range(3):
        _, order = await d.shop.place(wait_seconds=5)
        assert order["status"] == "succeeded"
    m = await scrape(d)
    assert m["gateway_orders_total", (("product", "mobile.cmcc.50"), ("status", "succeeded"))] == 3
    assert (
        m[
            "gateway_supplier_requests_total",
            (("operation", "submit"), ("outcome", "not_executed"), ("supplier", "first")),
        ]
        == 3
    )
    assert (
        m[
            "gateway_supplier_requests_total",
            (("operation", "submit"), ("outcome", "processing"), ("supplier", "second")),
        ]
        == 3
    )
    assert m["gateway_callbacks_total", (("result", "accepted"), ("supplier", "second"))] == 3
    assert m["gateway_supplier_up", (("supplier", "first"),)] == 1
    assert m["gateway_supplier_inflight", (("supplier", "second"),)] == 0
    assert m["gateway_orders_processing", (("reason", "awaiting_supplier"),)] == 0
    assert m["gateway_order_duration_seconds_count", (("product", "mobile.cmcc.50"),)] == 3
    assert m["gateway_http_requests_total", (("route", "/v1/orders"), ("status", "201"))] == 3
    assert (
        m["gateway_supplier_request_duration_seconds_count", (("operation", "submit"), ("supplier", "first"))]
        == 3
    )


async def test_admin_requires_the_token(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    async with ClientSession() as session:
        async with session.get(admin_url(d) + "/admin/suppliers") as response:
            assert response.status == 401
        async with session.get(
            admin_url(d) + "/admin/suppliers", headers={"Authorization": "Bearer wrong"}
        ) as response:
            assert response.status == 401
        async with session.get(
            admin_url(d) + "/admin/suppliers", headers={"Authorization": "Bearer admin-token"}
        ) as response:
            assert response.status == 200
            body = await response.json()
    assert [s["name"] for s in body["suppliers"]] == ["fulu"]
    assert body["suppliers"][0]["state"] == "closed"


async def test_admin_without_configured_token_refuses_everything(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()}, admin_token="")
    async with (
        ClientSession() as session,
        session.get(admin_url(d) + "/admin/suppliers", headers={"Authorization": "Bearer "}) as response,
    ):
        assert response.status == 403


async def test_disabling_a_supplier_routes_around_it(gateway: Gateway) -> None:
    d = await gateway({"a": SupplierSpec(), "b": SupplierSpec()})
    auth = {"Authorization": "Bearer admin-token"}
    async with ClientSession() as session:
        async with session.post(admin_url(d) + "/admin/suppliers/a/disable", headers=auth) as response:
            assert response.status == 200
            assert (await response.json())["routable"] is False
        async with session.post(admin_url(d) + "/admin/suppliers/zzz/disable", headers=auth) as response:
            assert response.status == 404
    _, order = await d.shop.place(wait_seconds=5)
    assert [a["supplier"] for a in order["attempts"]] == ["b"]
    m = await scrape(d)
    assert m["gateway_supplier_up", (("supplier", "a"),)] == 0


async def test_an_accepted_order_survives_a_restart_on_sqlite(gateway: Gateway, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/gateway.db"
    knobs = {"callback_drop_rate": 1.0}
    first = await gateway({"fulu": SupplierSpec(knobs=knobs)}, store=store)
    _, order = await first.shop.place(order_id="KEEP-1", wait_seconds=2)
    assert order["attempts"][0]["outcome"] == "processing"
    await first.stop()

    second = await gateway({"fulu": SupplierSpec(knobs=knobs)}, store=store)
    status, again = await second.shop.get("KEEP-1")
    assert status == 200
    assert again["attempts"] == order["attempts"]
    assert again["status"] == "processing"


async def test_start_up_resumes_unsent_orders_and_never_resends_sent_ones(
    gateway: Gateway, tmp_path: Path
) -> None:
    """What a process killed mid-way leaves: an order with no attempt yet, and one caught while sending."""
    db = f"sqlite:///{tmp_path}/gateway.db"
    store = await open_store(db)
    now = time.time()
    for uid, order_id in (
        ("G01AAAAAAAAAAAAAAAAAAAAAAAAA", "UNSENT-1"),
        ("G01BBBBBBBBBBBBBBBBBBBBBBBBB", "SENDING-1"),
    ):
        request = OrderRequest(
            order_id=order_id, product="mobile.cmcc.50", account="13800138000", quantity=1, notify_url=None
        )
        order, _ = await store.create_order(
            Order(
                uid=uid, shop="demo", request=request, face_value_cents=5000, created_at=now, updated_at=now
            )
        )
        if order_id == "SENDING-1":
            await store.save_order(
                start_attempt(
                    order,
                    supplier="fulu",
                    sku="18221081",
                    cost_cents=4930,
                    upstream_order_id=uid + "01",
                    now=now,
                )
            )
    await store.close()

    d = await gateway({"fulu": SupplierSpec()}, store=db)
    resumed = await d.shop.wait_for("UNSENT-1", lambda o: o["status"] != "processing")
    assert resumed["status"] == "succeeded"
    _, sending = await d.shop.get("SENDING-1")
    assert (sending["status"], sending["reason"]) == ("processing", "outcome_unknown")
    assert "G01BBBBBBBBBBBBBBBBBBBBBBBBB01" not in d.simulators["fulu"].ledger
