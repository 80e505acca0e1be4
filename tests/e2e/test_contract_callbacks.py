"""Supplier callbacks by GET (CONTRACT.md §2: "`POST` (and `GET`, for suppliers that call back that way)").

dayuanren signs every field it sends, so the same fields can come as a form body or as a query string;
the POST is the control that shows the fields and signature are right, so a GET refused is the method's
doing alone.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.dayuanren import encode_form, sign
from tests.e2e.harness import Deployment, Gateway, SupplierSpec
from tests.e2e.test_operations import scrape

CREDENTIALS = {"userid": "10001", "apikey": "demo-apikey"}


async def open_orders(gateway: Gateway, *order_ids: str) -> tuple[Deployment, dict[str, str]]:
    """Orders dayuanren accepted and never called back about: (deployment, order id -> upstream id)."""
    d = await gateway(
        {
            "dyr": SupplierSpec(
                protocol="dayuanren",
                credentials=dict(CREDENTIALS),
                knobs={"callback_drop_rate": 1.0, "result_after": 0.0},
            )
        },
        [{"supplier": "dyr", "sku": "101", "cost": "49.30"}],
    )
    upstream = {}
    for order_id in order_ids:
        await d.shop.place(order_id=order_id, wait_seconds=0)
        order = await d.shop.wait_for(
            order_id, lambda o: bool(o["attempts"]) and o["attempts"][0]["outcome"] == "processing"
        )
        upstream[order_id] = order["attempts"][0]["upstream_order_id"]
    return d, upstream


def callback_fields(upstream_id: str, state: str = "1") -> dict[str, str]:
    fields: dict[str, Any] = {
        "userid": CREDENTIALS["userid"],
        "order_number": "D" + upstream_id[-8:],
        "out_trade_num": upstream_id,
        "otime": str(int(time.time())),
        "state": state,
        "mobile": "13800138000",
        "remark": "充值成功",
        "charge_amount": "50",
    }
    fields["sign"] = sign(fields, CREDENTIALS["apikey"])
    return fields


async def test_a_get_callback_with_the_fields_in_the_query_string_is_verified_and_applied(
    gateway: Gateway,
) -> None:
    d, upstream = await open_orders(gateway, "BY-POST", "BY-GET")
    url = f"{d.base_url}/callbacks/dyr"

    posted = encode_form(callback_fields(upstream["BY-POST"]))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with d.session.post(url, data=posted, headers=headers) as response:
        assert (response.status, await response.read()) == (200, b"success")
    assert (await d.shop.get("BY-POST"))[1]["status"] == "succeeded"

    async with d.session.get(url, params=callback_fields(upstream["BY-GET"])) as response:
        answer = (response.status, await response.read())
    assert answer == (200, b"success"), answer
    _, order = await d.shop.get("BY-GET")
    assert (order["status"], order["supplier_order_id"]) == ("succeeded", "D" + upstream["BY-GET"][-8:])
    m = await scrape(d)
    assert m["gateway_callbacks_total", (("result", "accepted"), ("supplier", "dyr"))] == 2


async def test_a_get_callback_with_a_bad_signature_is_401_and_changes_nothing(gateway: Gateway) -> None:
    d, upstream = await open_orders(gateway, "FORGED")
    fields = {**callback_fields(upstream["FORGED"]), "state": "2"}  # signed as a success, says failed
    async with d.session.get(f"{d.base_url}/callbacks/dyr", params=fields) as response:
        assert response.status == 401
    _, order = await d.shop.get("FORGED")
    assert (order["status"], order["attempts"][0]["outcome"]) == ("processing", "processing")
