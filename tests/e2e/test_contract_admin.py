"""CONTRACT.md §4, admin listener: every field of `GET /admin/suppliers`; `/readyz` if the store fails."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from tests.e2e.harness import Deployment, Gateway, SupplierSpec
from tests.e2e.test_operations import admin_url, scrape

AUTH = {"Authorization": "Bearer admin-token"}
CONTRACT_FIELDS = {
    "name",
    "protocol",
    "state",
    "disabled",
    "routable",
    "success_rate",
    "latency_p50_seconds",
    "latency_p99_seconds",
    "inflight",
    "rate_limit",
}
JUHE = {"key": "demo-key", "openid": "demo-openid"}


async def suppliers(d: Deployment) -> dict[str, dict[str, Any]]:
    async with (
        ClientSession() as session,
        session.get(admin_url(d) + "/admin/suppliers", headers=AUTH) as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert set(body) == {"instance", "suppliers"}  # which instance answered: see test_instances
    listed = {s["name"]: s for s in body["suppliers"]}
    assert len(listed) == len(body["suppliers"])
    for view in listed.values():
        assert set(view) >= CONTRACT_FIELDS, view
    return listed


async def admin_post(d: Deployment, path: str) -> None:
    async with ClientSession() as session, session.post(admin_url(d) + path, headers=AUTH) as response:
        assert response.status == 200, await response.text()


async def test_admin_suppliers_shows_every_field_with_its_value(gateway: Gateway) -> None:
    limit = {"rate": 50, "per": "2s", "burst": 30, "max_wait": "100ms"}
    d = await gateway(
        {
            "main": SupplierSpec(timeout="1s", extra={"rate_limit": limit}),
            "idle": SupplierSpec(protocol="juhe", credentials=JUHE),
        },
        [
            {"supplier": "main", "sku": "18221081", "cost": "49.30", "priority": 1},
            {"supplier": "idle", "sku": "50", "cost": "49.25", "priority": 2},
        ],
        orders={"max_attempts": 1},  # "idle" is never tried: its figures stay empty
    )
    orders = [(await d.shop.place(order_id=f"OK-{i}", wait_seconds=5))[1] for i in range(3)]
    assert all(order["status"] == "succeeded" for order in orders)
    main = d.simulators["main"]
    main.knobs = main.knobs.model_copy(update={"refuse_rate": 1.0})
    _, refused = await d.shop.place(order_id="NO-1", wait_seconds=5)
    assert [a["outcome"] for a in refused["attempts"]] == ["not_executed"]
    orders.append(refused)

    listed = await suppliers(d)
    assert set(listed) == {"main", "idle"}
    view = listed["main"]
    assert (view["name"], view["protocol"], view["state"]) == ("main", "fulu", "closed")
    assert (view["disabled"], view["routable"], view["inflight"]) == (False, True, 0)
    assert view["success_rate"] == pytest.approx(3 / 4)  # three delivered, one refused
    # The quantiles are of the same four exchanges the orders' attempts timed (to the millisecond).
    durations = sorted(a["duration_ms"] for order in orders for a in order["attempts"])
    assert view["latency_p50_seconds"] * 1000 == pytest.approx(durations[2], abs=1)
    assert view["latency_p99_seconds"] * 1000 == pytest.approx(durations[3], abs=1)
    assert view["latency_p50_seconds"] <= view["latency_p99_seconds"]
    assert view["rate_limit"] == {"rate": 50, "per_seconds": 2.0, "burst": 30, "max_wait_seconds": 0.1}

    view = listed["idle"]
    assert (view["name"], view["protocol"], view["state"]) == ("idle", "juhe", "closed")
    assert (view["disabled"], view["routable"], view["inflight"]) == (False, True, 0)
    assert (view["success_rate"], view["latency_p50_seconds"], view["latency_p99_seconds"]) == (
        None,
        None,
        None,
    )
    assert view["rate_limit"] == {"rate": 100, "per_seconds": 1.0, "burst": 20, "max_wait_seconds": 0.25}

    await admin_post(d, "/admin/suppliers/idle/disable")
    listed = await suppliers(d)
    assert (listed["idle"]["disabled"], listed["idle"]["routable"]) == (True, False)
    assert (listed["main"]["disabled"], listed["main"]["routable"]) == (False, True)

    # A submit under way is in flight until it ends; one never answered counts against the rate.
    main.knobs = main.knobs.model_copy(
        update={"refuse_rate": 0.0, "hang_rate": 1.0, "callback_drop_rate": 1.0}
    )
    status, hung = await d.shop.place(order_id="HUNG-1", wait_seconds=0)
    assert status == 201, hung
    assert (await suppliers(d))["main"]["inflight"] == 1
    assert (await scrape(d))["gateway_supplier_inflight", (("supplier", "main"),)] == 1
    async with asyncio.timeout(10):  # the supplier timeout (1 s) ends it
        while True:
            view = (await suppliers(d))["main"]
            if not view["inflight"]:
                break
            await asyncio.sleep(0.05)
    assert view["success_rate"] == pytest.approx(3 / 5)
    assert view["latency_p99_seconds"] >= 1.0  # the wait for the reply that never came


async def test_readyz_is_503_when_the_store_fails_and_healthz_stays_200(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway({"fulu": SupplierSpec()}, store=f"sqlite:///{tmp_path}/gateway.db")
    async with ClientSession() as session:

        async def probe(path: str) -> tuple[int, Any]:
            async with session.get(admin_url(d) + path) as response:
                return response.status, await response.json()

        assert await probe("/readyz") == (200, {"status": "ready"})
        _, order = await d.shop.place(order_id="BEFORE", wait_seconds=5)
        assert order["status"] == "succeeded"

        # The store really stops: its thread finishes and the SQLite file is closed; every call
        # after that fails, as it would for a store the process can no longer use.
        await d.runtime.store.close()
        status, body = await probe("/readyz")
        assert status == 503, body
        assert body["error"]["code"] == "store_unavailable"
        assert await probe("/healthz") == (200, {"status": "ok"})  # the process itself is alive

        status, body, headers = await d.shop.post_raw(
            b'{"order_id": "AFTER", "product": "mobile.cmcc.50", "account": "13800138000"}'
        )
        assert (status, body["error"]["code"]) == (503, "store_unavailable")
        assert int(headers["Retry-After"]) > 0  # CONTRACT §6: when to try again
        assert len(d.simulators["fulu"].requests) == 1  # only BEFORE's submit: nothing left for AFTER
