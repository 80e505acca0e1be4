"""Supplier callbacks at /callbacks/{supplier}: verification, exactly-once application, refusals."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import ClientSession

from adapters.fulu import sign
from gateway.simulator.faults import Fault
from tests.e2e.harness import FULU_CREDENTIALS, Deployment, Gateway, SupplierSpec


def callback_body(
    upstream_id: str, status: str = "success", secret: str = FULU_CREDENTIALS["app_secret"]
) -> bytes:
    fields: dict[str, Any] = {
        "order_id": "F1",
        "charge_finish_time": "2026-11-22 10:00:07",
        "customer_order_no": upstream_id,
        "order_status": status,
        "recharge_description": "充值成功" if status == "success" else "充值失败",
        "price": "49.30",
        "buy_num": "1",
        "operator_serial_number": "OP1",
    }
    fields["sign"] = sign(fields, secret)
    return orjson.dumps(fields)


async def post_callback(d: Deployment, supplier: str, body: bytes) -> tuple[int, bytes]:
    async with (
        ClientSession() as session,
        session.post(
            f"{d.base_url}/callbacks/{supplier}", data=body, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, await response.read()


async def open_order(gateway: Gateway) -> tuple[Deployment, str]:
    """An order accepted by the supplier whose callback was dropped: we call back by hand."""
    d = await gateway({"fulu": SupplierSpec(knobs={"callback_drop_rate": 1.0, "result_after": 0.0})})
    await d.shop.place(order_id="CB-1", wait_seconds=0)
    order = await d.shop.wait_for(
        "CB-1", lambda o: bool(o["attempts"]) and o["attempts"][0]["outcome"] == "processing"
    )
    return d, order["attempts"][0]["upstream_order_id"]


async def test_a_valid_callback_is_applied_and_acknowledged(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    status, body = await post_callback(d, "fulu", callback_body(upstream_id))
    assert (status, body) == (200, b"success")
    _, order = await d.shop.get("CB-1")
    assert order["status"] == "succeeded"


async def test_a_duplicate_callback_is_acknowledged_and_changes_nothing(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    assert (await post_callback(d, "fulu", callback_body(upstream_id)))[0] == 200
    _, first = await d.shop.get("CB-1")
    assert (await post_callback(d, "fulu", callback_body(upstream_id))) == (200, b"success")
    _, second = await d.shop.get("CB-1")
    assert first == second


async def test_a_contradicting_callback_never_flips_a_final_order(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    await post_callback(d, "fulu", callback_body(upstream_id, "success"))
    status, body = await post_callback(d, "fulu", callback_body(upstream_id, "failed"))
    assert (status, body) == (200, b"success")  # acknowledged, so the supplier stops retrying
    _, order = await d.shop.get("CB-1")
    assert order["status"] == "succeeded"
    stored = await d.runtime.store.get_order("demo", "CB-1")
    assert stored is not None
    assert len(stored.incidents) == 1


async def test_bad_signature_is_401_and_changes_nothing(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    status, body = await post_callback(d, "fulu", callback_body(upstream_id, secret="forged"))
    assert status == 401
    assert orjson.loads(body)["error"]["code"] == "unauthenticated"
    _, order = await d.shop.get("CB-1")
    assert order["status"] == "processing"


async def test_unknown_upstream_id_is_refused(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    for forged in ("G00000000000000000000000000001", upstream_id[:-2] + "07"):
        status, body = await post_callback(d, "fulu", callback_body(forged))
        assert status == 404
        assert orjson.loads(body)["error"]["code"] == "unknown_order"


async def test_callback_naming_the_wrong_supplier_is_refused(gateway: Gateway) -> None:
    d = await gateway(
        {"fulu": SupplierSpec(knobs={"callback_drop_rate": 1.0}), "other": SupplierSpec()},
    )
    _, order = await d.shop.place(order_id="CB-2", wait_seconds=1)
    upstream_id = order["attempts"][0]["upstream_order_id"]
    status, _ = await post_callback(d, "other", callback_body(upstream_id))
    assert status == 404
    assert (await d.shop.get("CB-2"))[1]["status"] == "processing"


async def test_garbage_callbacks_are_refused(gateway: Gateway) -> None:
    d, _ = await open_order(gateway)
    for body in (b"", b"{", b"<html>", b'{"customer_order_no": "x"}', "\xff\xfe".encode("latin-1")):
        status, reply = await post_callback(d, "fulu", body)
        assert status in (400, 401), body
        assert orjson.loads(reply)["error"]["code"] in ("invalid_request", "unauthenticated")


async def test_callback_for_an_unknown_supplier_is_404(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    status, _ = await post_callback(d, "nobody", callback_body(upstream_id))
    assert status == 404


async def test_a_validly_signed_forged_failure_never_fails_an_order_over(gateway: Gateway) -> None:
    """juhe signs only the ids: a real callback replayed with sta=9 verifies. It must not fail over."""
    d = await gateway(
        {
            "juhe": SupplierSpec(
                protocol="juhe",
                credentials={"key": "forge-test-key", "openid": "forge-test-openid"},
                knobs={"forged_callback_rate": 1.0, "result_after": 0.05},
            ),
            "spare": SupplierSpec(),
        },
        offers=[
            {"supplier": "juhe", "sku": "50", "cost": "49.25", "priority": 1},
            {"supplier": "spare", "sku": "18221081", "cost": "49.30", "priority": 2},
        ],
    )
    for number in range(5):
        _, placed = await d.shop.place(order_id=f"FORGED-{number}", wait_seconds=0)
        order = await d.shop.wait_for(placed["order_id"], lambda o: o["status"] != "processing")
        assert order["status"] == "succeeded", order
        assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [("juhe", "succeeded")]
    juhe = d.simulators["juhe"]
    forged = juhe.ledger.with_fault(Fault.FORGED_CALLBACK)
    assert len(forged) == 5
    assert all(entry.forged_callbacks_sent >= 2 for entry in forged)  # a bad signature and a valid one
    assert len(d.simulators["spare"].ledger) == 0  # never a second charge
