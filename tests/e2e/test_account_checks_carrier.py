"""CONTRACT.md §7, carrier and region of a mobile number, end to end on real sockets.

`account_info` in the order JSON, `422 carrier_mismatch` before anything is recorded or sent,
`carrier_check: off`, and offers that serve only some provinces, first choice and failover alike.
Numbers: 13800138000 中国移动 北京, 13900151234 中国移动 江苏, 13900571234 中国移动 浙江,
18612345678 中国联通 北京, 19212345678 中国广电 (province unknown).
"""

from __future__ import annotations

from typing import Any

from aiohttp import ClientSession

from gateway.simulator import Simulator
from tests.e2e.harness import Gateway, SupplierSpec
from tests.e2e.test_operations import admin_url

BEIJING_CMCC = "13800138000"
JIANGSU_CMCC = "13900151234"
ZHEJIANG_CMCC = "13900571234"
BEIJING_CUCC = "18612345678"
NATIONWIDE_CBN = "19212345678"

OTHER_PRODUCTS = {
    "game.qq.qb10": {
        "account": "qq",
        "face_value": "10",
        "offers": [{"supplier": "fulu", "sku": "10000585", "cost": "9.90"}],
    },
    "game.id.10": {
        "account": "game",
        "face_value": "10",
        "offers": [{"supplier": "fulu", "sku": "10000586", "cost": "9.90"}],
    },
}


def offer(supplier: str, priority: int, **keys: Any) -> dict[str, Any]:
    return {"supplier": supplier, "sku": "18221081", "cost": "49.30", "priority": priority, **keys}


def accounts(simulator: Simulator) -> list[str]:
    return [entry.account for entry in simulator.ledger.entries()]


async def test_account_info_in_the_order_json_for_mobile_numbers_only(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()}, products=OTHER_PRODUCTS)

    status, placed = await d.shop.place(order_id="AI-1", account=JIANGSU_CMCC, wait_seconds=5)
    assert status == 201, placed
    assert placed["account_info"] == {"carrier": "cmcc", "province": "江苏"}
    assert placed["status"] == "succeeded"
    status, read = await d.shop.get("AI-1")
    assert (status, read["account_info"]) == (200, {"carrier": "cmcc", "province": "江苏"})
    # A replay answers from the store, with what was looked up when the order was taken.
    status, replayed = await d.shop.place(order_id="AI-1", account=JIANGSU_CMCC)
    assert (status, replayed["account_info"]) == (200, placed["account_info"])

    status, unknown = await d.shop.place(order_id="AI-2", account=NATIONWIDE_CBN)
    assert (status, unknown["account_info"]) == (201, {"carrier": "cbn", "province": None})

    async with (
        ClientSession() as session,
        session.get(
            f"{admin_url(d)}/admin/orders/demo/AI-1", headers={"Authorization": "Bearer admin-token"}
        ) as response,
    ):
        assert response.status == 200
        assert (await response.json())["account_info"] == {"carrier": "cmcc", "province": "江苏"}

    for order_id, product, account in [("QQ-1", "game.qq.qb10", "10001"), ("GM-1", "game.id.10", "player_1")]:
        status, other = await d.shop.place(order_id=order_id, product=product, account=account)
        assert status == 201, other
        assert "account_info" not in other
        status, other = await d.shop.get(order_id)
        assert status == 200
        assert "account_info" not in other


async def test_carrier_mismatch_is_refused_with_nothing_recorded_or_sent(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()}, product={"carrier": "cmcc"})

    status, body = await d.shop.place(order_id="CM-1", account=BEIJING_CUCC)

    assert status == 422, body
    error = body["error"]
    assert error["code"] == "carrier_mismatch"
    assert "中国联通" in error["message"]
    assert [detail["field"] for detail in error["details"]] == ["account"]
    status, _ = await d.shop.get("CM-1")
    assert status == 404
    assert len(d.simulators["fulu"].ledger) == 0

    # The product's own carrier passes, and the refused order_id is still free to use.
    status, body = await d.shop.place(order_id="CM-1", account=BEIJING_CMCC, wait_seconds=5)
    assert (status, body["status"]) == (201, "succeeded")
    assert accounts(d.simulators["fulu"]) == [BEIJING_CMCC]


async def test_carrier_check_off_sells_to_ported_numbers(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()}, product={"carrier": "cmcc", "carrier_check": "off"})

    status, body = await d.shop.place(order_id="PORT-1", account=BEIJING_CUCC, wait_seconds=5)

    assert (status, body["status"]) == (201, "succeeded"), body
    assert body["account_info"] == {"carrier": "cucc", "province": "北京"}
    assert accounts(d.simulators["fulu"]) == [BEIJING_CUCC]


async def test_a_regional_offer_receives_only_its_provinces_numbers(gateway: Gateway) -> None:
    d = await gateway(
        {"east": SupplierSpec(), "nation": SupplierSpec()},
        [offer("east", 1, provinces=["江苏", "浙江"]), offer("nation", 2)],
    )
    expected = {
        "R-JS": (JIANGSU_CMCC, "east"),
        "R-ZJ": (ZHEJIANG_CMCC, "east"),
        "R-BJ": (BEIJING_CMCC, "nation"),
        "R-CBN": (NATIONWIDE_CBN, "nation"),  # unknown province: only offers without a list
    }

    for order_id, (account, supplier) in expected.items():
        status, body = await d.shop.place(order_id=order_id, account=account, wait_seconds=5)
        assert status == 201, body
        assert [(a["supplier"], a["outcome"]) for a in body["attempts"]] == [(supplier, "succeeded")]

    assert sorted(accounts(d.simulators["east"])) == sorted([JIANGSU_CMCC, ZHEJIANG_CMCC])
    assert sorted(accounts(d.simulators["nation"])) == sorted([BEIJING_CMCC, NATIONWIDE_CBN])


async def test_exclude_provinces_sends_those_numbers_to_the_next_offer(gateway: Gateway) -> None:
    d = await gateway(
        {"notbj": SupplierSpec(), "nation": SupplierSpec()},
        [offer("notbj", 1, exclude_provinces=["北京"]), offer("nation", 2)],
    )

    for order_id, account in [("X-BJ", BEIJING_CMCC), ("X-JS", JIANGSU_CMCC), ("X-CBN", NATIONWIDE_CBN)]:
        status, body = await d.shop.place(order_id=order_id, account=account, wait_seconds=5)
        assert (status, body["status"]) == (201, "succeeded"), body

    assert accounts(d.simulators["nation"]) == [BEIJING_CMCC]
    assert sorted(accounts(d.simulators["notbj"])) == sorted([JIANGSU_CMCC, NATIONWIDE_CBN])


async def test_no_offer_serving_the_province_is_503_with_nothing_recorded(gateway: Gateway) -> None:
    d = await gateway({"east": SupplierSpec()}, [offer("east", 1, provinces=["江苏", "浙江"])])

    for order_id, account in [("N-BJ", BEIJING_CMCC), ("N-CBN", NATIONWIDE_CBN)]:
        status, body = await d.shop.place(order_id=order_id, account=account)
        assert status == 503, body
        assert body["error"]["code"] == "no_supplier_available"
        status, _ = await d.shop.get(order_id)
        assert status == 404

    assert len(d.simulators["east"].ledger) == 0


async def test_failover_skips_offers_that_do_not_serve_the_province(gateway: Gateway) -> None:
    # nation refuses everything before charging, so each order moves on: only to an offer serving it.
    d = await gateway(
        {"nation": SupplierSpec(knobs={"refuse_rate": 1.0}), "east": SupplierSpec()},
        [offer("nation", 1), offer("east", 2, provinces=["江苏"])],
    )

    status, jiangsu = await d.shop.place(order_id="F-JS", account=JIANGSU_CMCC, wait_seconds=5)
    assert status == 201, jiangsu
    assert [(a["supplier"], a["outcome"]) for a in jiangsu["attempts"]] == [
        ("nation", "not_executed"),
        ("east", "succeeded"),
    ]

    status, beijing = await d.shop.place(order_id="F-BJ", account=BEIJING_CMCC, wait_seconds=5)
    assert status == 201, beijing
    assert (beijing["status"], beijing["reason"]) == ("failed", "no_supplier_available")
    assert [(a["supplier"], a["outcome"]) for a in beijing["attempts"]] == [("nation", "not_executed")]
    assert accounts(d.simulators["east"]) == [JIANGSU_CMCC]
