"""Unknown and silent outcomes are settled by querying the supplier, never by trying another one."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from adapters.interface import AccountKind, Charge, Outcome, Verdict
from gateway.lifecycle import start_attempt
from gateway.order import Order, OrderRequest
from tests.e2e.harness import Gateway, SupplierSpec

SILENT = {"callback_drop_rate": 1.0}


async def test_timeout_after_a_charge_is_settled_by_a_query(gateway: Gateway) -> None:
    d = await gateway(
        {"slow": SupplierSpec(knobs={"hang_rate": 1.0, **SILENT}, timeout="200ms"), "spare": SupplierSpec()}
    )
    _, order = await d.shop.place(order_id="R-1", wait_seconds=1)
    assert order["reason"] == "outcome_unknown"
    report = await d.runtime.reconciler.sweep()
    assert report.queried == 1
    _, order = await d.shop.get("R-1")
    assert (order["status"], [a["outcome"] for a in order["attempts"]]) == ("succeeded", ["succeeded"])
    assert len(d.simulators["spare"].requests) == 0


async def test_server_error_and_garbage_after_a_charge_are_settled_by_a_query(gateway: Gateway) -> None:
    for knob in ("error_rate", "garbage_rate"):
        d = await gateway({"flaky": SupplierSpec(knobs={knob: 1.0, **SILENT}), "spare": SupplierSpec()})
        _, order = await d.shop.place(order_id="R-2", wait_seconds=1)
        assert order["reason"] == "outcome_unknown", knob
        await d.runtime.reconciler.sweep()
        _, order = await d.shop.get("R-2")
        assert order["status"] == "succeeded", knob
        assert len(d.simulators["spare"].requests) == 0


async def test_not_found_means_not_executed_only_after_the_grace(gateway: Gateway) -> None:
    d = await gateway(
        {
            "lossy": SupplierSpec(knobs={"hang_rate": 1.0, "hang_charges": False}, timeout="200ms"),
            "spare": SupplierSpec(),
        },
        orders={"not_found_grace": "60s"},
    )
    _, order = await d.shop.place(order_id="R-3", wait_seconds=1)
    assert order["reason"] == "outcome_unknown"

    d.clock.advance(30)
    await d.runtime.reconciler.sweep()
    _, order = await d.shop.get("R-3")
    assert [a["outcome"] for a in order["attempts"]] == ["unknown"]  # not found, but maybe not yet recorded
    assert len(d.simulators["spare"].requests) == 0

    d.clock.advance(31)
    await d.runtime.reconciler.sweep()
    order = await d.shop.wait_for("R-3", lambda o: o["status"] != "processing")
    assert order["status"] == "succeeded"
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
        ("lossy", "not_executed"),
        ("spare", "succeeded"),
    ]
    assert d.simulators["lossy"].ledger.charges() == []


async def test_accepted_orders_without_callback_are_queried_after_reconcile_after(gateway: Gateway) -> None:
    d = await gateway({"quiet": SupplierSpec(knobs=SILENT)}, orders={"reconcile_after": "30s"})
    _, order = await d.shop.place(order_id="R-4", wait_seconds=1)
    assert order["attempts"][0]["outcome"] == "processing"
    assert (await d.runtime.reconciler.sweep()).queried == 0  # too early: the callback may still come
    d.clock.advance(31)
    assert (await d.runtime.reconciler.sweep()).queried == 1
    _, order = await d.shop.get("R-4")
    assert order["status"] == "succeeded"


async def test_duplicate_id_refusal_is_unknown_and_queried(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs=SILENT), "spare": SupplierSpec()})
    _, order = await d.shop.place(order_id="R-5", wait_seconds=1)
    upstream_id = order["attempts"][0]["upstream_order_id"]
    # The same upstream id again (as after a crash mid-send): the supplier refuses it as a duplicate.
    reply, _ = await d.runtime.upstream.submit(
        d.runtime.suppliers["fulu"],
        upstream_id,
        d.runtime.suppliers["fulu"].adapter.build_submit(_charge(upstream_id, d.clock.now())),
    )
    assert (
        reply.verdict is Verdict.UNKNOWN
    )  # the supplier may hold a charge under that id: query, never resend


async def test_orders_nobody_can_settle_go_to_manual_review(gateway: Gateway) -> None:
    d = await gateway(
        {"lossy": SupplierSpec(knobs={"hang_rate": 1.0, "hang_charges": False}, timeout="200ms")},
        orders={"not_found_grace": "48h", "manual_review_after": "24h"},
    )
    _, order = await d.shop.place(order_id="R-6", wait_seconds=1)
    d.clock.advance(24 * 3600 + 1)
    report = await d.runtime.reconciler.sweep()
    assert report.manual_review == 1
    _, order = await d.shop.get("R-6")
    assert (order["status"], order["reason"]) == ("processing", "manual_review")
    assert (await d.runtime.reconciler.sweep()).manual_review == 0


def _charge(upstream_id: str, now: float) -> Charge:
    return Charge(
        upstream_order_id=upstream_id,
        sku="18221081",
        account="13800138000",
        account_kind=AccountKind.MOBILE_CN,
        face_value_cents=5000,
        quantity=1,
        max_cost_cents=4930,
        callback_url="http://127.0.0.1:1/",
        timestamp=now,
    )


async def test_an_unreadable_reply_is_logged_with_an_excerpt(gateway: Gateway) -> None:
    d = await gateway({"broken": SupplierSpec(knobs={"garbage_rate": 1.0, **SILENT})})
    with capture_logs() as logs:
        await d.shop.place(order_id="LOG-1", wait_seconds=1)
    [entry] = [e for e in logs if e["event"] == "supplier_reply_unknown"]
    assert entry["supplier"] == "broken"
    assert entry["log_level"] == "warning"
    assert "not JSON" in entry["detail"]
    assert len(entry["detail"]) < 200  # an excerpt, not the whole body


async def test_an_order_left_between_attempts_is_routed_on(gateway: Gateway) -> None:
    """Its router died after the first supplier declined (a store error, a lost task): nobody else
    would ever move it. The reconciler routes it on, and only once however often it sweeps."""
    d = await gateway({"first": SupplierSpec(), "second": SupplierSpec()}, orders={"reconcile_after": "10s"})
    now = d.clock.now()
    request = OrderRequest(
        order_id="STALLED-1", product="mobile.cmcc.50", account="13800138000", quantity=1, notify_url=None
    )
    uid = "G01STALLEDSTALLEDSTALLED0001"
    created, _ = await d.runtime.store.create_order(
        Order(uid=uid, shop="demo", request=request, face_value_cents=5000, created_at=now, updated_at=now)
    )
    begun = start_attempt(
        created, supplier="first", sku="18221081", cost_cents=4930, upstream_order_id=uid + "01", now=now
    )
    assert begun is not None
    declined = replace(
        begun, attempts=(replace(begun.attempts[0], outcome=Outcome.FAILED, code="1", replied=True),)
    )
    await d.runtime.store.save_order(declined)

    assert (await d.runtime.reconciler.sweep()).rerouted == 0  # not stalled yet: a router may be on it
    d.clock.advance(11)
    reports = [await d.runtime.reconciler.sweep() for _ in range(3)]
    assert reports[0].rerouted == 1
    order = await d.shop.wait_for("STALLED-1", lambda o: o["status"] != "processing")
    assert order["status"] == "succeeded"
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
        ("first", "failed"),
        ("second", "succeeded"),
    ]
    assert len(d.simulators["second"].ledger) == 1


class CappedBatches:
    """A dayuanren supplier whose submits time out after charging, and whose batch queries answer
    for the first id only (a capped reply): every other id looks "not found"."""

    def __init__(self) -> None:
        self.charged: list[str] = []
        self.batches: list[list[str]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/yrapi.php/index/recharge", self.recharge)
        app.router.add_post("/yrapi.php/index/check", self.check)
        return app

    async def recharge(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.charged.append(str(form["out_trade_num"]))
        await asyncio.sleep(1.0)  # past the gateway's timeout: it cannot tell what happened
        return web.json_response({"errno": 0, "errmsg": "ok", "data": {}})

    async def check(self, request: web.Request) -> web.Response:
        form = await request.post()
        ids = str(form["out_trade_nums"]).split(",")
        self.batches.append(ids)
        entries = [
            {"out_trade_num": uid, "order_number": f"D{uid[-6:]}", "state": 1, "charge_amount": "50"}
            for uid in ids[:1]
            if uid in self.charged
        ]
        return web.json_response({"errno": 0, "errmsg": "ok", "data": entries})


async def test_an_id_missing_from_a_capped_batch_is_asked_alone_before_it_counts(gateway: Gateway) -> None:
    supplier = CappedBatches()
    server = TestServer(supplier.app(), host="127.0.0.1")
    await server.start_server()
    try:
        d = await gateway(
            {
                "dyr": SupplierSpec(
                    url=str(server.make_url("")).rstrip("/"),
                    protocol="dayuanren",
                    credentials={"userid": "10001", "apikey": "capped-test-apikey"},
                    timeout="300ms",
                ),
                "spare": SupplierSpec(),
            },
            offers=[
                {"supplier": "dyr", "sku": "101", "cost": "49.30", "priority": 1},
                {"supplier": "spare", "sku": "18221081", "cost": "49.40", "priority": 2},
            ],
            orders={"not_found_grace": "5s"},
        )
        for number in (1, 2):
            _, order = await d.shop.place(order_id=f"CAP-{number}", wait_seconds=1)
            assert order["reason"] == "outcome_unknown", order
        d.clock.advance(60)  # far past the grace: a "not found" would now count as not executed
        await d.runtime.reconciler.sweep()
        assert sorted(len(batch) for batch in supplier.batches) == [1, 2]  # the missing one, alone
        for number in (1, 2):
            _, order = await d.shop.get(f"CAP-{number}")
            assert order["status"] == "succeeded", order
            assert [a["supplier"] for a in order["attempts"]] == ["dyr"]
        assert len(d.simulators["spare"].ledger) == 0
    finally:
        await server.close()
