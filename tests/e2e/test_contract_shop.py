"""CONTRACT.md §1 as a shop meets it over HTTP: quantity, permissions, privacy, idempotency, notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientSession

from tests.e2e.harness import Deployment, Gateway, Shop, ShopEndpoint, SupplierSpec
from tests.e2e.test_operations import admin_url, scrape
from tests.e2e.test_reload import edit, reload

AUTH = {"Authorization": "Bearer admin-token"}
QUIET = SupplierSpec(knobs={"callback_drop_rate": 1.0})  # accepts, never calls back: orders stay open
OTHER_SECRET = "other-shop-secret"


def order_body(order_id: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {"order_id": order_id, "product": "mobile.cmcc.50", "account": "13800138000", **fields}
    )


def error_code(body: Any) -> str:
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


async def admin_order(d: Deployment, shop: str, order_id: str) -> tuple[int, Any]:
    async with (
        ClientSession() as session,
        session.get(f"{admin_url(d)}/admin/orders/{shop}/{order_id}", headers=AUTH) as response,
    ):
        return response.status, await response.json()


async def until(holds: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if holds():
                return
            await asyncio.sleep(0.02)


# -- quantity --------------------------------------------------------------------------------------


async def test_quantity_multiplies_the_delivered_value_and_the_cost(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, order = await d.shop.place(order_id="QTY-3", quantity=3, wait_seconds=5)
    assert (status, order["status"], order["quantity"]) == (201, "succeeded", 3), order
    assert order["delivered_value"] == "150"  # face value 50 x 3
    [attempt] = order["attempts"]
    entry = d.simulators["fulu"].ledger[attempt["upstream_order_id"]]
    # fulu's mobile call has no quantity: the gateway asks for 150 yuan in one charge.
    assert (entry.face_value_cents, entry.quantity) == (15000, 1)
    assert entry.cost_cents == 14790
    assert order["cost"] == "147.90"  # what the supplier charged for all three, as it reported
    _, single = await d.shop.place(order_id="QTY-1", wait_seconds=5)
    assert (single["delivered_value"], single["cost"]) == ("50", "49.30")


async def test_quantity_multiplies_the_offer_cost_when_the_supplier_reports_no_price(
    gateway: Gateway,
) -> None:
    """fulu's direct products carry `buy_num`; its reply and callback name no price for them, so the
    order's cost can only come from the offer: 49.30 each, three of them."""
    d = await gateway({"fulu": SupplierSpec()}, account="game")
    status, order = await d.shop.place(order_id="QTY-D3", quantity=3, wait_seconds=5)
    assert (status, order["status"]) == (201, "succeeded"), order
    [attempt] = order["attempts"]
    entry = d.simulators["fulu"].ledger[attempt["upstream_order_id"]]
    assert (entry.quantity, entry.cost_cents) == (3, None)  # three units, no price reported
    assert order["delivered_value"] == "150"
    assert order["cost"] == "147.90", order


# -- who may see and sell what ---------------------------------------------------------------------


async def test_a_product_the_shop_may_not_sell_is_403_and_nothing_is_recorded(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway({"fulu": SupplierSpec()}, config_dir=tmp_path)

    def add_a_shop_selling_another_product(doc: Any) -> None:
        doc["products"]["mobile.cmcc.100"] = {
            "account": "mobile_cn",
            "face_value": "100",
            "offers": [{"supplier": "fulu", "sku": "18221082", "cost": "98.60"}],
        }
        doc["shops"]["narrow"] = {"secret": OTHER_SECRET, "products": ["mobile.cmcc.100"]}

    edit(d, add_a_shop_selling_another_product)
    assert (await reload(d))[0] == 200
    narrow = Shop(d.session, d.base_url, shop="narrow", secret=OTHER_SECRET, now=d.clock.now)
    status, body, _ = await narrow.post_raw(order_body("N-1"))
    assert status == 403, body
    assert error_code(body) == "product_not_allowed"
    assert "mobile.cmcc.50" in body["error"]["message"]
    assert (await narrow.get("N-1"))[0] == 404
    assert (await admin_order(d, "narrow", "N-1"))[0] == 404
    assert len(d.simulators["fulu"].requests) == 0
    # The product it may sell goes through, and so does the refused body from a shop that may sell it.
    status, body, _ = await narrow.post_raw(order_body("N-2", product="mobile.cmcc.100"))
    assert status == 201, body
    status, body, _ = await d.shop.post_raw(order_body("N-1"))
    assert status == 201, body
    metrics = await scrape(d)
    assert metrics["gateway_http_requests_total", (("route", "/v1/orders"), ("status", "403"))] == 1


async def test_another_shops_order_is_404_and_nothing_of_it_leaks(gateway: Gateway) -> None:
    d = await gateway(
        {"fulu": SupplierSpec()},
        shops={"other": {"secret": OTHER_SECRET, "products": ["mobile.*"], "notify_hosts": ["127.0.0.1"]}},
    )
    other = Shop(d.session, d.base_url, shop="other", secret=OTHER_SECRET, now=d.clock.now)
    _, mine = await d.shop.place(order_id="MINE-1", account="13800138000", wait_seconds=5)
    assert mine["status"] == "succeeded"

    status, body = await other.get("MINE-1")
    assert status == 404
    assert error_code(body) == "order_not_found"
    text = orjson.dumps(body).decode()
    [attempt] = mine["attempts"]
    for secret in ("13800138000", attempt["upstream_order_id"], mine["supplier_order_id"], "fulu", "demo"):
        assert secret not in text, (secret, text)
    # Nothing tells "another shop's" from "nobody's": the same answer, the asked id aside.
    status, missing = await other.get("NOPE-1")
    assert status == 404
    assert body["error"]["message"].replace("MINE-1", "ID") == missing["error"]["message"].replace(
        "NOPE-1", "ID"
    )

    # The id is the other shop's to use: its own order, not a replay (200) or a conflict (409).
    status, theirs = await other.place(order_id="MINE-1", account="13900139000", wait_seconds=5)
    assert (status, theirs["account"], theirs["status"]) == (201, "13900139000", "succeeded")
    assert theirs["attempts"][0]["upstream_order_id"] != attempt["upstream_order_id"]
    _, again = await d.shop.get("MINE-1")
    assert again == mine


# -- idempotency: "the same body" ------------------------------------------------------------------


async def test_an_omitted_default_and_the_explicit_default_are_the_same_body(gateway: Gateway) -> None:
    """CONTRACT.md §1: "the same fields with the same values". A field left out has its documented
    value (`quantity` 1), so `{...}` and `{..., "quantity": 1}` ask for the same order; the code agrees:
    it compares the validated request, defaults applied (gateway/api.py, `order.request != ...`).
    `wait_seconds` is not part of the order at all (how long to hold this one request), so a retry
    that waits differently is the same body too. A different quantity is a different order: 409.
    """
    d = await gateway({"fulu": QUIET})
    status, first, _ = await d.shop.post_raw(order_body("IDEM-1", wait_seconds=0))
    assert status == 201, first
    for retry in ({"quantity": 1}, {"quantity": 1, "wait_seconds": 0.5}, {}):
        status, same, _ = await d.shop.post_raw(order_body("IDEM-1", **retry))
        assert status == 200, (retry, same)
        assert same["attempts"][0]["upstream_order_id"] == first["attempts"][0]["upstream_order_id"]
        assert (same["created_at"], same["quantity"]) == (first["created_at"], 1)

    status, _, _ = await d.shop.post_raw(order_body("IDEM-2", quantity=1, wait_seconds=0))
    assert status == 201
    status, _, _ = await d.shop.post_raw(order_body("IDEM-2"))  # the other way round
    assert status == 200

    status, body, _ = await d.shop.post_raw(order_body("IDEM-1", quantity=2))
    assert status == 409, body
    assert error_code(body) == "order_id_conflict"
    assert len(d.simulators["fulu"].ledger) == 2  # one submit per order, none for the retries


async def test_a_different_notify_url_is_an_order_id_conflict(gateway: Gateway) -> None:
    d = await gateway({"fulu": QUIET})
    hook = "http://127.0.0.1:9/hooks/a"
    status, _, _ = await d.shop.post_raw(order_body("URL-1", notify_url=hook, wait_seconds=0))
    assert status == 201
    for changed in ({"notify_url": "http://127.0.0.1:9/hooks/b"}, {}):
        status, body, _ = await d.shop.post_raw(order_body("URL-1", **changed))
        assert status == 409, (changed, body)
        assert error_code(body) == "order_id_conflict"
    _, stored = await admin_order(d, "demo", "URL-1")
    assert stored["notify_url"] == hook  # the refused bodies changed nothing
    status, _, _ = await d.shop.post_raw(order_body("URL-1", notify_url=hook))
    assert status == 200

    status, _, _ = await d.shop.post_raw(order_body("URL-2", wait_seconds=0))
    assert status == 201
    status, body, _ = await d.shop.post_raw(order_body("URL-2", notify_url=hook))  # added afterwards
    assert (status, error_code(body)) == (409, "order_id_conflict")
    assert len(d.simulators["fulu"].ledger) == 2


def posted(endpoint: ShopEndpoint, order_id: str) -> bool:
    return any(r["order_id"] == order_id for r in endpoint.received)


# -- notifications ---------------------------------------------------------------------------------

NOTIFY = {"timeout": "300ms", "max_attempts": 3, "backoff": {"initial": "10s", "max": "1m"}}


async def test_any_2xx_acknowledges_a_notification(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.answers = [204, 202]
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    for order_id in ("ACK-204", "ACK-202"):
        _, order = await d.shop.place(order_id=order_id, notify_url=url, wait_seconds=5)
        assert order["status"] == "succeeded"
        await until(partial(posted, endpoint, order_id))
        await d.runtime.notifier.idle()
    for order_id, code in (("ACK-204", 204), ("ACK-202", 202)):
        _, view = await admin_order(d, "demo", order_id)
        note = view["notification"]
        assert note["delivered_at"] is not None, note
        assert (note["attempts"], note["due_at"], note["gave_up"]) == (1, None, False)
        assert [h["status"] for h in note["history"]] == [code]
    d.clock.advance(120)  # nothing is due again: an acknowledged notification is never re-sent
    assert await d.runtime.notifier.deliver_due() == 0
    assert sorted(r["order_id"] for r in endpoint.received) == ["ACK-202", "ACK-204"]
    metrics = await scrape(d)
    assert metrics["gateway_notifications_total", (("result", "delivered"),)] == 2
    assert metrics["gateway_notifications_total", (("result", "retried"),)] == 0


async def test_a_shop_endpoint_that_times_out_is_a_failed_delivery_and_retried(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.hang = True  # reads the POST, then answers nothing for 30 s
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    _, order = await d.shop.place(order_id="SLOW-SHOP", notify_url=url, wait_seconds=5)
    assert order["status"] == "succeeded"
    await endpoint.next_post()
    await d.runtime.notifier.idle()  # ended by notify.timeout, not by the shop
    _, view = await admin_order(d, "demo", "SLOW-SHOP")
    note = view["notification"]
    assert (note["attempts"], note["delivered_at"], note["gave_up"]) == (1, None, False), note
    assert note["due_at"] is not None  # retried with backoff
    [failed] = note["history"]
    assert failed["status"] is None
    assert "Timeout" in failed["error"], failed
    metrics = await scrape(d)
    assert metrics["gateway_notifications_total", (("result", "retried"),)] == 1
    assert metrics["gateway_notifications_total", (("result", "delivered"),)] == 0

    endpoint.hang = False
    d.clock.advance(13)  # past the first backoff (10 s, with jitter)
    assert await d.runtime.notifier.deliver_due() == 1
    await d.runtime.notifier.idle()
    _, view = await admin_order(d, "demo", "SLOW-SHOP")
    note = view["notification"]
    assert note["delivered_at"] is not None
    assert [h["status"] for h in note["history"]] == [None, 200]
    assert len(endpoint.received) == 2
