"""One signed order end to end over real sockets: success by callback, failover rules, idempotency."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp.test_utils import unused_port

from gateway.simulator import ChargeState
from tests.e2e.harness import Gateway, SupplierSpec


async def test_order_succeeds_through_the_simulators_callback(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"result_after": 0.05})})
    status, order = await d.shop.place(order_id="SHOP-1", wait_seconds=5)
    assert status == 201, order
    assert order["status"] == "succeeded"
    assert order["reason"] is None
    assert order["supplier"] == "fulu"
    assert order["cost"] == "49.30"
    assert order["delivered_value"] == "50"
    [attempt] = order["attempts"]
    assert attempt["outcome"] == "succeeded"
    assert attempt["upstream_order_id"].endswith("01")
    entry = d.simulators["fulu"].ledger[attempt["upstream_order_id"]]
    assert entry.charged
    assert entry.state is ChargeState.SUCCEEDED
    assert entry.account == "13800138000"
    assert entry.callbacks_acknowledged >= 1
    assert len(d.simulators["fulu"].ledger.charges()) == 1


async def test_processing_answer_then_callback_seen_by_polling(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"result_after": 0.2})})
    status, order = await d.shop.place(order_id="SHOP-2", wait_seconds=0)
    assert status == 201
    assert order["status"] == "processing"
    assert order["reason"] == "awaiting_supplier"
    done = await d.shop.wait_for("SHOP-2", lambda o: o["status"] != "processing")
    assert done["status"] == "succeeded"


async def test_supplier_side_failure_fails_over_to_the_next_offer(gateway: Gateway) -> None:
    d = await gateway({"first": SupplierSpec(knobs={"success_rate": 0.0}), "second": SupplierSpec()})
    _, order = await d.shop.place(order_id="SHOP-3", wait_seconds=5)
    assert order["status"] == "succeeded", order
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
        ("first", "failed"),
        ("second", "succeeded"),
    ]
    ids = [a["upstream_order_id"] for a in order["attempts"]]
    assert ids[0][:-2] == ids[1][:-2]
    assert ids[0] != ids[1]
    assert order["supplier"] == "second"


async def test_refusal_before_charging_fails_over(gateway: Gateway) -> None:
    d = await gateway({"first": SupplierSpec(knobs={"refuse_rate": 1.0}), "second": SupplierSpec()})
    _, order = await d.shop.place(wait_seconds=5)
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
        ("first", "not_executed"),
        ("second", "succeeded"),
    ]
    assert d.simulators["first"].ledger.charges() == []


async def test_connection_refused_is_not_executed_and_fails_over(gateway: Gateway) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    d = await gateway({"dead": SupplierSpec(url=dead), "live": SupplierSpec()})
    _, order = await d.shop.place(wait_seconds=5)
    assert order["status"] == "succeeded"
    assert [a["outcome"] for a in order["attempts"]] == ["not_executed", "succeeded"]


async def test_every_offer_refusing_fails_the_order(gateway: Gateway) -> None:
    d = await gateway(
        {"a": SupplierSpec(knobs={"refuse_rate": 1.0}), "b": SupplierSpec(knobs={"refuse_rate": 1.0})}
    )
    _, order = await d.shop.place(wait_seconds=5)
    assert order["status"] == "failed"
    assert order["reason"] == "no_supplier_available"
    assert len(order["attempts"]) == 2


async def test_declines_everywhere_fail_with_supplier_failed(gateway: Gateway) -> None:
    d = await gateway(
        {"a": SupplierSpec(knobs={"success_rate": 0.0}), "b": SupplierSpec(knobs={"success_rate": 0.0})}
    )
    _, order = await d.shop.place(wait_seconds=5)
    assert (order["status"], order["reason"]) == ("failed", "supplier_failed")


async def test_max_attempts_bounds_the_suppliers_tried(gateway: Gateway) -> None:
    specs = {name: SupplierSpec(knobs={"refuse_rate": 1.0}) for name in ("a", "b", "c")}
    d = await gateway(specs, orders={"max_attempts": 2})
    _, order = await d.shop.place(wait_seconds=5)
    assert order["status"] == "failed"
    assert [a["supplier"] for a in order["attempts"]] == ["a", "b"]
    assert len(d.simulators["c"].requests) == 0


async def test_timeout_after_sending_never_reaches_a_second_supplier(gateway: Gateway) -> None:
    d = await gateway(
        {
            "slow": SupplierSpec(
                knobs={"hang_rate": 1.0, "hang_charges": True, "callback_drop_rate": 1.0}, timeout="300ms"
            ),
            "spare": SupplierSpec(),
        }
    )
    status, order = await d.shop.place(order_id="HANG-1", wait_seconds=1)
    assert status == 201
    assert order["status"] == "processing"
    assert order["reason"] == "outcome_unknown"
    assert [a["outcome"] for a in order["attempts"]] == ["unknown"]
    assert len(d.simulators["spare"].requests) == 0
    assert len(d.simulators["slow"].ledger.charges()) == 1  # it did charge: failing over would charge twice


async def test_server_error_after_charging_is_unknown_not_failed_over(gateway: Gateway) -> None:
    d = await gateway(
        {"flaky": SupplierSpec(knobs={"error_rate": 1.0, "callback_drop_rate": 1.0}), "spare": SupplierSpec()}
    )
    _, order = await d.shop.place(wait_seconds=1)
    assert (order["status"], order["reason"]) == ("processing", "outcome_unknown")
    assert len(d.simulators["spare"].requests) == 0


async def test_garbage_reply_is_unknown_not_failed_over(gateway: Gateway) -> None:
    d = await gateway(
        {
            "broken": SupplierSpec(knobs={"garbage_rate": 1.0, "callback_drop_rate": 1.0}),
            "spare": SupplierSpec(),
        }
    )
    _, order = await d.shop.place(wait_seconds=1)
    assert (order["status"], order["reason"]) == ("processing", "outcome_unknown")
    assert len(d.simulators["spare"].requests) == 0


async def test_twenty_identical_requests_make_one_order_and_one_submit(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"result_after": 0.3})})
    results = await asyncio.gather(*(d.shop.place(order_id="DUP-1", wait_seconds=0) for _ in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 19 + [201]
    assert len({order["attempts"][0]["upstream_order_id"] for _, order in results if order["attempts"]}) <= 1
    await d.shop.wait_for("DUP-1", lambda o: o["status"] == "succeeded")
    assert len(d.simulators["fulu"].ledger) == 1
    assert d.simulators["fulu"].ledger.entries()[0].submissions == 1


async def test_same_order_id_with_another_body_is_a_conflict(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    assert (await d.shop.place(order_id="C-1", wait_seconds=0))[0] == 201
    status, body = await d.shop.place(order_id="C-1", account="13900139000")
    assert status == 409
    assert body["error"]["code"] == "order_id_conflict"
    again, order = await d.shop.place(order_id="C-1", wait_seconds=3)
    assert again == 200
    assert order["account"] == "13800138000"


async def test_a_shop_that_hangs_up_does_not_cancel_the_order(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"latency": 0.2, "result_after": 0.05})})
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.05):
            await d.shop.place(order_id="GONE-1", wait_seconds=5)
    order = await d.shop.wait_for("GONE-1", lambda o: o["status"] != "processing")
    assert order["status"] == "succeeded"
    assert len(d.simulators["fulu"].ledger.charges()) == 1


async def test_disabled_suppliers_mean_503_and_nothing_recorded(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec(extra={"disabled": True})})
    status, body, headers = await d.shop.post_raw(
        b'{"order_id":"N-1","product":"mobile.cmcc.50","account":"13800138000"}'
    )
    assert status == 503
    assert body["error"]["code"] == "no_supplier_available"
    assert int(headers["Retry-After"]) > 0
    assert (await d.shop.get("N-1"))[0] == 404
    assert len(d.simulators["fulu"].requests) == 0


async def test_waiting_requests_leave_nothing_behind(gateway: Gateway) -> None:
    d = await gateway({"quiet": SupplierSpec(knobs={"callback_drop_rate": 1.0})})
    results = await asyncio.gather(*(d.shop.place(order_id=f"W-{i}", wait_seconds=0.2) for i in range(5)))
    assert all(order["status"] == "processing" for _, order in results)
    # Private on purpose: the bound on memory is what is tested.
    assert d.runtime.events._waiters == {}
    assert d.runtime.events._waiting == {}
