"""CONTRACT.md §7 and §8 against a real `gateway run` process, as a shop and an operator meet them.

One process, two simulated suppliers in the test (one serving only 江苏), shops with every guard
configured: each check answers before anything is recorded or sent, the answers carry what the
contract says, the refusals are counted, and a browser's token follows an order over the WebSocket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, WSMsgType

from tests.e2e.fleet import GatewayProcess, admin_listening_on, restartable_port, start_supplier
from tests.e2e.harness import SECRET, Shop, SupplierSpec, config_yaml

WITHIN = 10.0
GUARDED = "guarded"
THROTTLED = "throttled"


async def _admin(
    session: ClientSession, url: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": "Bearer admin-token", "Content-Type": "application/json"}
    data = None if body is None else orjson.dumps(body)
    async with session.request(method, url + path, data=data, headers=headers) as response:
        return response.status, orjson.loads(await response.read()) if response.content_type.endswith(
            "json"
        ) else None


async def _metrics(session: ClientSession, url: str) -> str:
    async with session.get(url + "/metrics") as response:
        return await response.text()


async def test_every_check_before_the_charge_and_a_browser_following_an_order(tmp_path: Path) -> None:
    port, admin_port = restartable_port(), restartable_port()
    cleanups: list[Callable[[], Awaitable[None]]] = []
    session = ClientSession()
    cleanups.append(session.close)
    certain = SupplierSpec(knobs={"success_rate": 1.0})  # every order succeeds at its first supplier
    regional, regional_url = await start_supplier("regional", certain, port, cleanups)
    national, national_url = await start_supplier("national", certain, port, cleanups)
    offers = [
        {"supplier": "regional", "sku": "18221081", "cost": "49.00", "priority": 1, "provinces": ["江苏"]},
        {"supplier": "national", "sku": "18221081", "cost": "49.30", "priority": 2},
    ]
    shops = {
        GUARDED: {
            "secret": SECRET,
            "products": ["mobile.*"],
            "duplicate_window": "1m",
            "account_limits": {"orders_per_day": 2},
            "max_streams": 1,
        },
        THROTTLED: {
            "secret": SECRET,
            "products": ["mobile.*"],
            "rate_limit": {"rate": 1, "per": "1m", "burst": 0},
        },
    }
    text = config_yaml(
        port,
        {"regional": SupplierSpec(url=regional_url), "national": SupplierSpec(url=national_url)},
        offers,
        shops=shops,
        product={"carrier": "cmcc"},
    )
    config = tmp_path / "gateway.yaml"
    config.write_text(admin_listening_on(text, admin_port))
    process = GatewayProcess(config, port, tmp_path)
    await process.start()
    admin = f"http://127.0.0.1:{admin_port}"
    base = f"http://127.0.0.1:{port}"
    demo, guarded, throttled = (Shop(session, base, shop=name) for name in ("demo", GUARDED, THROTTLED))
    try:
        # Carrier and province: account_info in the answer; a 江苏 number goes to the regional offer.
        status, beijing = await demo.place(order_id="BJ-1", account="13800138000", wait_seconds=3)
        assert status == 201
        assert beijing["account_info"] == {"carrier": "cmcc", "province": "北京"}
        assert [a["supplier"] for a in beijing["attempts"]] == ["national"]
        status, jiangsu = await demo.place(order_id="JS-1", account="13900151234", wait_seconds=3)
        assert (status, jiangsu["account_info"]["province"]) == (201, "江苏")
        assert [a["supplier"] for a in jiangsu["attempts"]] == ["regional"]
        sent = len(regional.ledger) + len(national.ledger)

        status, body = await demo.place(order_id="CU-1", account="18612345678")
        assert (status, body["error"]["code"]) == (422, "carrier_mismatch")
        assert "cucc" in body["error"]["message"] or "联通" in body["error"]["message"]

        # Duplicate guard and the account's daily limit.
        assert (await guarded.place(order_id="D-1", account="13800138001", wait_seconds=0))[0] == 201
        status, body = await guarded.place(order_id="D-2", account="13800138001")
        assert (status, body["error"]["code"]) == (409, "duplicate_suspected")
        assert body["error"]["details"] == [{"field": "order_id", "message": "D-1"}]
        again = await guarded.place(
            order_id="D-3", account="13800138001", allow_duplicate=True, wait_seconds=0
        )
        assert again[0] == 201
        status, body = await guarded.place(order_id="D-4", account="13800138001", allow_duplicate=True)
        assert (status, body["error"]["code"]) == (429, "account_limit_exceeded")

        # Blocked accounts, through the admin API.
        blocked = await _admin(
            session, admin, "POST", "/admin/blocked-accounts", {"account": "13800138009", "note": "fraud"}
        )
        assert blocked[0] == 201
        status, body = await demo.place(order_id="B-1", account="13800138009")
        assert (status, body["error"]["code"]) == (403, "account_blocked")
        assert (await _admin(session, admin, "DELETE", "/admin/blocked-accounts/13800138009"))[0] == 200
        assert (await demo.place(order_id="B-2", account="13800138009", wait_seconds=0))[0] == 201

        # The shop's request rate: the second request within the minute waits for Retry-After.
        assert (await throttled.place(order_id="T-1", wait_seconds=0))[0] == 201
        body_bytes = orjson.dumps({"order_id": "T-2", "product": "mobile.cmcc.50", "account": "13800138000"})
        status, body, headers = await throttled.post_raw(body_bytes)
        assert (status, body["error"]["code"]) == (429, "rate_limited")
        assert int(headers["Retry-After"]) >= 1

        # Nothing the refusals touched was recorded or sent.
        for shop, order_id in (
            ("demo", "CU-1"),
            (GUARDED, "D-2"),
            (GUARDED, "D-4"),
            ("demo", "B-1"),
            (THROTTLED, "T-2"),
        ):
            assert (await _admin(session, admin, "GET", f"/admin/orders/{shop}/{order_id}"))[0] == 404
        assert len(regional.ledger) + len(national.ledger) == sent + 4  # D-1, D-3, B-2 and T-1 only

        # A browser's token follows one order over the WebSocket to its end; streams are capped.
        status, minted = await _mint(guarded, {"order_id": "D-1"})
        assert status == 201
        async with session.ws_connect(
            f"{base.replace('http', 'ws')}/v1/orders/ws?token={minted['token']}"
        ) as ws:
            await ws.send_str(orjson.dumps({"type": "resume", "last_event_id": None}).decode())
            async with asyncio.timeout(WITHIN):
                while True:
                    message = await ws.receive()
                    assert message.type is WSMsgType.TEXT, message
                    doc = orjson.loads(message.data)
                    if doc["type"] == "order" and doc["order"]["status"] == "succeeded":
                        assert doc["order"]["order_id"] == "D-1"
                        break
            path = "/v1/orders/events"
            async with session.get(base + path, headers=guarded.headers("GET", path, b"")) as second:
                assert second.status == 429  # the socket holds the shop's one stream

        refusals = await _metrics(session, admin)
        for shop, code in (
            ("demo", "carrier_mismatch"),
            (GUARDED, "duplicate_suspected"),
            (GUARDED, "account_limit_exceeded"),
            ("demo", "account_blocked"),
            (THROTTLED, "rate_limited"),
            (GUARDED, "too_many_streams"),
        ):
            assert f'gateway_shop_requests_refused_total{{code="{code}",shop="{shop}"}} 1.0' in refusals
        assert await process.stop() == 0
        assert process.troubles() == []
    finally:
        await process.stop()
        for cleanup in reversed(cleanups):
            await cleanup()


async def _mint(shop: Shop, fields: dict[str, Any]) -> tuple[int, Any]:
    body = orjson.dumps(fields)
    path = "/v1/stream-tokens"
    async with shop.session.post(
        shop.base_url + path, data=body, headers=shop.headers("POST", path, body)
    ) as response:
        return response.status, orjson.loads(await response.read())


pytestmark = pytest.mark.slow
