"""Operator actions over real sockets (CONTRACT.md §10): hold instead of fail, resubmit (补单), re-notify."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final

import orjson

from gateway.order import Reason
from tests.e2e.harness import SHOP, Deployment, Gateway, ShopEndpoint, SupplierSpec
from tests.e2e.test_admin_orders import HUNG, UNSETTLED, Admin, ids

# Refuses every submit before charging: each attempt ends certainly uncharged.
REFUSING: Final = SupplierSpec(knobs={"refuse_rate": 1.0})
HOLD: Final = {"when_exhausted": "hold", "hold_for": "10m"}


async def resubmit(
    admin: Admin, order_id: str, doc: Any = None, *, operator: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if operator is not None:
        headers["X-Operator"] = operator
    body = b"" if doc is None else orjson.dumps(doc)
    return await admin.call("POST", f"/admin/orders/{SHOP}/{order_id}/resubmit", body, headers)


async def renotify(admin: Admin, order_id: str) -> tuple[int, Any]:
    return await admin.call("POST", f"/admin/orders/{SHOP}/{order_id}/notify")


def recover(d: Deployment, name: str) -> None:
    """The supplier's channel is back: it takes and charges every order from now on."""
    simulator = d.simulators[name]
    simulator.knobs = simulator.knobs.model_copy(update={"refuse_rate": 0.0, "success_rate": 1.0})


async def held_order(gateway: Gateway, url: str, **suppliers: SupplierSpec) -> tuple[Deployment, Admin]:
    """Order H-1 with a notify_url, held after every offer refused it."""
    d = await gateway(suppliers or {"flaky": REFUSING}, orders={**UNSETTLED, **HOLD})
    _, placed = await d.shop.place(order_id="H-1", notify_url=url, wait_seconds=0)
    order = await d.shop.wait_for("H-1", lambda o: o["reason"] == "held")
    assert placed["status"] == order["status"] == "processing"
    assert all(a["outcome"] in ("failed", "not_executed") for a in order["attempts"])
    return d, Admin(d)


async def test_a_held_order_stays_processing_is_listed_and_counted_and_the_shop_hears_nothing(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d, admin = await held_order(gateway, url)
    status, listing = await admin.get("/admin/orders?reason=held")
    assert (status, ids(listing)) == (200, ["H-1"])
    assert d.runtime.metrics.processing[Reason.HELD] == 1
    assert d.runtime.metrics.processing[Reason.AWAITING_SUPPLIER] == 0

    # Sweeps within the hold neither route it on nor fail it; the shop is told nothing.
    d.clock.advance(60)
    await d.runtime.reconciler.sweep()
    await d.runtime.notifier.deliver_due()
    await d.runtime.notifier.idle()
    _, order = await d.shop.get("H-1")
    assert (order["status"], order["reason"], len(order["attempts"])) == ("processing", "held", 1)
    assert endpoint.received == []


async def test_after_hold_for_the_reconciler_fails_it_and_the_shop_is_told(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d, _ = await held_order(gateway, url)
    d.clock.advance(599)
    assert (await d.runtime.reconciler.sweep()).hold_ended == 0
    d.clock.advance(2)
    assert (await d.runtime.reconciler.sweep()).hold_ended == 1
    _, order = await d.shop.get("H-1")
    assert order["status"] == "failed"
    assert order["reason"] in ("supplier_failed", "no_supplier_available")
    posted = await endpoint.next_post()
    assert (posted["order_id"], posted["status"]) == ("H-1", "failed")
    assert d.runtime.metrics.processing[Reason.HELD] == 0


async def test_resubmit_after_the_supplier_recovers_succeeds_and_the_shop_is_told_once(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d, admin = await held_order(gateway, url)
    recover(d, "flaky")
    status, order = await resubmit(admin, "H-1", {"note": "channel back"}, operator="li.wei")
    assert status == 202, order
    assert len(order["attempts"]) == 2
    assert order["reason"] == "awaiting_supplier"
    assert any(
        i["kind"] == "resubmitted_by_operator" and i["detail"] == "li.wei: channel back"
        for i in order["incidents"]
    )
    done = await d.shop.wait_for("H-1", lambda o: o["status"] == "succeeded")
    assert done["attempts"][-1]["outcome"] == "succeeded"
    posted = await endpoint.next_post()
    assert (posted["order_id"], posted["status"]) == ("H-1", "succeeded")
    await d.runtime.notifier.idle()
    await asyncio.sleep(0.1)
    assert len(endpoint.received) == 1
    assert len(d.simulators["flaky"].ledger.charges()) == 1


async def test_resubmit_to_a_chosen_supplier_tries_only_that_offer(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d = await gateway(
        {"flaky": REFUSING, "spare": SupplierSpec()}, orders={**UNSETTLED, **HOLD, "max_attempts": 1}
    )
    admin = Admin(d)
    await d.shop.place(order_id="H-2", notify_url=url, wait_seconds=0)
    await d.shop.wait_for("H-2", lambda o: o["reason"] == "held")

    status, error = await resubmit(admin, "H-2", {"supplier": "nobody"})
    assert (status, error["error"]["code"]) == (400, "invalid_request")
    status, order = await resubmit(admin, "H-2", {"supplier": "spare"})
    assert status == 202, order
    assert [a["supplier"] for a in order["attempts"]] == ["flaky", "spare"]  # past max_attempts: asked for
    done = await d.shop.wait_for("H-2", lambda o: o["status"] == "succeeded")
    assert done["supplier"] == "spare"
    assert (await endpoint.next_post())["status"] == "succeeded"
    _, seen = await admin.get(f"/admin/orders/{SHOP}/H-2")
    # Without X-Operator the record names the default operator.
    assert [i["detail"] for i in seen["incidents"] if i["kind"] == "resubmitted_by_operator"] == ["admin"]

    status, error = await resubmit(admin, "H-2")
    assert (status, error["error"]["code"]) == (409, "order_final")
    status, error = await resubmit(admin, "NO-SUCH")
    assert (status, error["error"]["code"]) == (404, "order_not_found")


async def test_a_chosen_supplier_that_refuses_again_leaves_the_order_held(gateway: Gateway) -> None:
    d = await gateway({"flaky": REFUSING, "also": REFUSING}, orders={**UNSETTLED, **HOLD, "max_attempts": 1})
    admin = Admin(d)
    await d.shop.place(order_id="H-3", wait_seconds=0)
    await d.shop.wait_for("H-3", lambda o: o["reason"] == "held")
    status, _ = await resubmit(admin, "H-3", {"supplier": "flaky"})
    assert status == 202
    order = await d.shop.wait_for("H-3", lambda o: o["reason"] == "held" and len(o["attempts"]) == 2)
    assert [a["supplier"] for a in order["attempts"]] == ["flaky", "flaky"]
    assert len(d.simulators["also"].ledger) == 0


async def test_resubmit_with_an_unknown_attempt_is_refused_and_nothing_is_sent(gateway: Gateway) -> None:
    d = await gateway({"hung": HUNG}, orders=UNSETTLED)
    admin = Admin(d)
    _, placed = await d.shop.place(order_id="U-1", wait_seconds=1)
    assert placed["reason"] == "outcome_unknown"
    sent = len(d.simulators["hung"].ledger)

    status, error = await resubmit(admin, "U-1", {"supplier": "hung"}, operator="li.wei")
    assert (status, error["error"]["code"]) == (409, "unsafe_resubmit")
    details = error["error"]["details"]
    assert [(x["supplier"], x["outcome"]) for x in details] == [("hung", "unknown")]
    stored = await d.runtime.store.get_order(SHOP, "U-1")
    assert stored is not None
    assert details[0]["upstream_order_id"] == stored.attempts[0].upstream_order_id
    await asyncio.sleep(0.1)
    assert len(stored.attempts) == 1
    assert len(d.simulators["hung"].ledger) == sent


async def test_resubmit_refuses_a_bad_body(gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]) -> None:
    _, url = shop_endpoint
    _, admin = await held_order(gateway, url)
    status, error = await admin.call(
        "POST", f"/admin/orders/{SHOP}/H-1/resubmit", b'{"supplier": 3, "extra": 1}', {"X-Operator": ""}
    )
    assert status == 400
    assert {d["field"] for d in error["error"]["details"]} == {"supplier", "extra", "X-Operator"}
    # Whitespace is not JSON, nor is it no body (found by test_openapi_conformance): refused, nothing sent.
    status, error = await admin.call("POST", f"/admin/orders/{SHOP}/H-1/resubmit", b"\n")
    assert (status, [d["field"] for d in error["error"]["details"]]) == (400, ["body"])


async def test_renotify_after_give_up_delivers_again_and_is_in_the_history(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.answers = [500]
    notify = {"timeout": "1s", "max_attempts": 1, "backoff": {"initial": "10s", "max": "1m"}}
    d = await gateway({"fulu": SupplierSpec()}, notify=notify)
    admin = Admin(d)
    await d.shop.place(order_id="R-1", notify_url=url, wait_seconds=5)
    await endpoint.next_post()
    await d.runtime.notifier.idle()
    stored = await d.runtime.store.get_order(SHOP, "R-1")
    assert stored is not None
    assert stored.notification is not None
    assert stored.notification.gave_up

    status, order = await renotify(admin, "R-1")
    assert status == 202, order
    posted = await endpoint.next_post()
    assert (posted["order_id"], posted["status"]) == ("R-1", "succeeded")
    await d.runtime.notifier.idle()
    stored = await d.runtime.store.get_order(SHOP, "R-1")
    assert stored is not None
    assert stored.notification is not None
    assert [h.status for h in stored.notification.history] == [500, 200]
    assert stored.notification.delivered_at is not None
    assert len(endpoint.received) == 2


async def test_renotify_refuses_an_order_that_is_not_final_or_has_no_notify_url(gateway: Gateway) -> None:
    d = await gateway({"hung": HUNG, "fulu": SupplierSpec()}, orders=UNSETTLED)
    admin = Admin(d)
    await d.shop.place(order_id="P-1", wait_seconds=1)
    status, error = await renotify(admin, "P-1")
    assert (status, error["error"]["code"]) == (409, "order_not_final")
    await admin.switch("hung", on=False)
    _, done = await d.shop.place(order_id="P-2", wait_seconds=5)
    assert done["status"] == "succeeded"
    status, error = await renotify(admin, "P-2")
    assert (status, error["error"]["code"]) == (409, "no_notify_url")
    status, error = await renotify(admin, "NO-SUCH")
    assert (status, error["error"]["code"]) == (404, "order_not_found")


async def test_hold_and_resubmit_on_sqlite_survive_a_restart(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str], tmp_path: Path
) -> None:
    """The hold is in the store: a restarted gateway neither routes the held order on nor fails it early."""
    endpoint, url = shop_endpoint
    store = f"sqlite:///{tmp_path}/gateway.db"
    first = await gateway({"flaky": REFUSING}, orders={**UNSETTLED, **HOLD}, store=store)
    await first.shop.place(order_id="S-1", notify_url=url, wait_seconds=0)
    await first.shop.wait_for("S-1", lambda o: o["reason"] == "held")
    await first.stop()

    second = await gateway({"flaky": SupplierSpec()}, orders={**UNSETTLED, **HOLD}, store=store)
    await second.runtime.reconciler.sweep()
    _, order = await second.shop.get("S-1")
    assert (order["status"], order["reason"], len(order["attempts"])) == ("processing", "held", 1)
    assert len(second.simulators["flaky"].ledger) == 0
    status, _ = await resubmit(Admin(second), "S-1", operator="li.wei")
    assert status == 202
    await second.shop.wait_for("S-1", lambda o: o["status"] == "succeeded")
    assert (await endpoint.next_post())["status"] == "succeeded"
