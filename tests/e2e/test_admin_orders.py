"""The admin order endpoints over real sockets: filtered listing, the operator view, operator resolution."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from tests.e2e.harness import SHOP, Deployment, Gateway, ShopEndpoint, SupplierSpec
from tests.e2e.test_callbacks import callback_body, post_callback
from tests.e2e.test_operations import admin_url

ISO: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# Hangs without charging, and queries keep answering "not found" inside the grace: stays unknown.
HUNG: Final = SupplierSpec(
    knobs={"hang_rate": 1.0, "hang_charges": False, "callback_drop_rate": 1.0}, timeout="200ms"
)
UNSETTLED: Final = {"manual_review_after": "1h", "not_found_grace": "48h"}


@dataclass
class Admin:
    """Calls the admin listener with the test's bearer token (or another, or none)."""

    d: Deployment
    token: str | None = "admin-token"

    async def call(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
        sent.update(headers or {})
        async with self.d.session.request(method, admin_url(self.d) + path, data=body, headers=sent) as reply:
            return reply.status, orjson.loads(await reply.read())

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def resolve(
        self, order_id: str, doc: Any, *, operator: str | None = None, shop: str = SHOP
    ) -> tuple[int, Any]:
        body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        headers = {"Content-Type": "application/json"}
        if operator is not None:
            headers["X-Operator"] = operator
        return await self.call("POST", f"/admin/orders/{shop}/{order_id}/resolve", body, headers)

    async def switch(self, supplier: str, *, on: bool) -> None:
        status, _ = await self.call("POST", f"/admin/suppliers/{supplier}/{'enable' if on else 'disable'}")
        assert status == 200


def ids(listing: Any) -> list[str]:
    return [o["order_id"] for o in listing["orders"]]


def fields(error: Any) -> set[str]:
    return {d["field"] for d in error["error"]["details"]}


async def unknown_order(gateway: Gateway, **place: Any) -> tuple[Deployment, Admin]:
    """A deployment with order U-1 left processing / outcome_unknown by a supplier that never answers."""
    d = await gateway({"hung": HUNG}, orders=UNSETTLED)
    _, order = await d.shop.place(order_id="U-1", wait_seconds=1, **place)
    assert (order["status"], order["reason"]) == ("processing", "outcome_unknown")
    return d, Admin(d)


async def four_orders(gateway: Gateway) -> tuple[Deployment, Admin]:
    """One order in each state worth filtering on, steered by switching suppliers off and on."""
    d = await gateway(
        {"good": SupplierSpec(), "bad": SupplierSpec(knobs={"success_rate": 0.0}), "hung": HUNG},
        orders=UNSETTLED,
    )
    admin = Admin(d)
    await admin.switch("good", on=False)
    await admin.switch("bad", on=False)
    _, review = await d.shop.place(order_id="L-REVIEW", wait_seconds=1)
    assert review["reason"] == "outcome_unknown"
    d.clock.advance(3601)
    assert (await d.runtime.reconciler.sweep()).manual_review == 1
    _, unknown = await d.shop.place(order_id="L-UNKNOWN", wait_seconds=1)
    assert unknown["reason"] == "outcome_unknown"

    await admin.switch("hung", on=False)
    await admin.switch("bad", on=True)
    _, failed = await d.shop.place(order_id="L-FAILED", wait_seconds=5)
    assert (failed["status"], failed["reason"]) == ("failed", "supplier_failed")
    await admin.switch("good", on=True)
    _, ok = await d.shop.place(order_id="L-OK", wait_seconds=5)
    assert ok["status"] == "succeeded"
    return d, admin


# -- listing ---------------------------------------------------------------------------------


async def test_listing_filters_by_status_and_reason(gateway: Gateway) -> None:
    _, admin = await four_orders(gateway)
    status, everything = await admin.get("/admin/orders")
    assert status == 200
    assert (everything["count"], everything["limit"], everything["has_more"]) == (4, 100, False)
    assert set(ids(everything)) == {"L-REVIEW", "L-UNKNOWN", "L-FAILED", "L-OK"}
    updated = [o["updated_at"] for o in everything["orders"]]
    assert updated == sorted(updated, reverse=True)  # most recently updated first
    assert ids(everything)[0] == "L-OK"

    expected = {
        "status=succeeded": ["L-OK"],
        "status=failed": ["L-FAILED"],
        "status=partial": [],
        "reason=supplier_failed": ["L-FAILED"],
        "reason=outcome_unknown": ["L-UNKNOWN"],
        "reason=manual_review": ["L-REVIEW"],
        "status=processing&reason=manual_review": ["L-REVIEW"],
        "status=succeeded&reason=manual_review": [],
        "status=&reason=": ["L-OK", "L-FAILED", "L-UNKNOWN", "L-REVIEW"],  # empty: no filter
    }
    for query, order_ids in expected.items():
        status, listing = await admin.get(f"/admin/orders?{query}")
        assert status == 200, query
        assert sorted(ids(listing)) == sorted(order_ids), query
        assert listing["count"] == len(order_ids), query
    _, processing = await admin.get("/admin/orders?status=processing")
    assert set(ids(processing)) == {"L-REVIEW", "L-UNKNOWN"}
    assert all(o["uid"] and o["shop"] == SHOP for o in processing["orders"])  # the operator view


async def test_listing_is_cut_at_the_limit_and_says_so(gateway: Gateway) -> None:
    _, admin = await four_orders(gateway)
    _, first = await admin.get("/admin/orders?limit=2")
    assert (ids(first), first["count"], first["limit"], first["has_more"]) == (
        ["L-OK", "L-FAILED"],
        2,
        2,
        True,
    )
    _, exact = await admin.get("/admin/orders?limit=4")
    assert (exact["count"], exact["has_more"]) == (4, False)


async def test_bad_filters_are_400_with_every_problem(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    admin = Admin(d)
    cases = {
        "status=done": {"status"},
        "reason=because": {"reason"},
        "limit=0": {"limit"},
        "limit=1001": {"limit"},
        "limit=ten": {"limit"},
        "limit=+5": {"limit"},
        "limit=1.5": {"limit"},
        "limit=" + "9" * 5000: {"limit"},  # more digits than int() reads: was a 500
        "status=failed&status=succeeded": {"status"},
        "shop=demo": {"shop"},
        "status=Succeeded&reason=x&limit=-1&page=2": {"status", "reason", "limit", "page"},
    }
    for query, problems in cases.items():
        status, body = await admin.get(f"/admin/orders?{query}")
        assert status == 400, query
        assert body["error"]["code"] == "invalid_request", query
        assert fields(body) == problems, query
    status, body = await admin.get("/admin/orders?limit=1000&status=processing&reason=awaiting_supplier")
    assert (status, body["orders"], body["count"]) == (200, [], 0)


# -- the operator view -----------------------------------------------------------------------


async def test_the_operator_view_shows_every_attempt_and_incident(gateway: Gateway) -> None:
    d = await gateway({"bad": SupplierSpec(knobs={"success_rate": 0.0}), "good": SupplierSpec()})
    admin = Admin(d)
    _, public = await d.shop.place(order_id="V-1", wait_seconds=5)
    assert [(a["supplier"], a["outcome"]) for a in public["attempts"]] == [
        ("bad", "failed"),
        ("good", "succeeded"),
    ]
    # The winning supplier later says it failed after all: kept as an incident, never applied.
    upstream_id = public["attempts"][1]["upstream_order_id"]
    assert (await post_callback(d, "good", callback_body(upstream_id, "failed")))[0] == 200

    status, view = await admin.get(f"/admin/orders/{SHOP}/V-1")
    assert status == 200
    _, public = await d.shop.get("V-1")
    for key, value in public.items():
        if key != "attempts":
            assert view[key] == value, key
    stored = await d.runtime.store.get_order(SHOP, "V-1")
    assert stored is not None
    assert (view["uid"], view["shop"], view["face_value"], view["notify_url"]) == (
        stored.uid,
        SHOP,
        "50",
        None,
    )
    assert (view["status"], view["cost"], view["delivered_value"]) == ("succeeded", "49.30", "50")

    for shown, seen_by_shop in zip(view["attempts"], public["attempts"], strict=True):
        assert shown.items() >= seen_by_shop.items()
        assert (shown["sku"], shown["cost"], shown["replied"]) == ("18221081", "49.30", True)
        assert ISO.fullmatch(shown["started_at"])
        assert isinstance(shown["duration_ms"], int)
    assert view["attempts"][1]["supplier_order_id"]
    assert view["attempts"][1]["delivered_value"] is None  # only a partial delivery reports one

    [incident] = view["incidents"]
    assert incident["kind"] == "succeeded_then_failed"
    assert upstream_id in incident["detail"]
    assert ISO.fullmatch(incident["at"])
    assert view["notification"] is None  # no notify_url


async def test_an_unknown_order_is_404(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    await d.shop.place(order_id="K-1", wait_seconds=5)
    admin = Admin(d)
    for path in (f"/admin/orders/{SHOP}/NOPE", "/admin/orders/other-shop/K-1"):
        status, body = await admin.get(path)
        assert (status, body["error"]["code"]) == (404, "order_not_found"), path
    status, body = await admin.resolve("NOPE", {"status": "failed", "note": "x"})
    assert (status, body["error"]["code"]) == (404, "order_not_found")


# -- resolving -------------------------------------------------------------------------------


async def test_resolving_an_unknown_outcome_to_failed_notifies_the_shop(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d, admin = await unknown_order(gateway, notify_url=url)
    assert endpoint.received == []  # nothing final yet: nothing sent

    status, view = await admin.resolve(
        "U-1", {"status": "failed", "note": "supplier confirmed by phone: not charged"}, operator="li.wei"
    )
    assert status == 200
    assert (view["status"], view["reason"]) == ("failed", "resolved_by_operator")
    assert "supplier confirmed by phone" not in view["message"]  # the note stays with operators
    [incident] = view["incidents"]
    assert (incident["kind"], incident["detail"]) == (
        "resolved_by_operator",
        "li.wei: supplier confirmed by phone: not charged",
    )
    assert [a["outcome"] for a in view["attempts"]] == ["unknown"]  # what the supplier said stays as said

    posted = await endpoint.next_post()
    assert endpoint.bad_signatures == 0
    assert (posted["order_id"], posted["status"], posted["reason"]) == (
        "U-1",
        "failed",
        "resolved_by_operator",
    )
    assert posted["message"] == "resolved by an operator"
    await d.runtime.notifier.idle()
    _, view = await admin.get(f"/admin/orders/{SHOP}/U-1")
    note = view["notification"]
    assert (note["attempts"], note["gave_up"], note["due_at"]) == (1, False, None)
    assert ISO.fullmatch(note["delivered_at"])
    [delivery] = note["history"]
    assert (delivery["status"], delivery["error"]) == (200, None)
    assert ISO.fullmatch(delivery["at"])
    assert isinstance(delivery["duration_ms"], int)
    _, public = await d.shop.get("U-1")
    assert (public["status"], public["reason"]) == ("failed", "resolved_by_operator")


async def test_resolving_manual_review_to_succeeded_defaults_the_operator(gateway: Gateway) -> None:
    d, admin = await unknown_order(gateway)
    d.clock.advance(3601)
    await d.runtime.reconciler.sweep()
    _, listing = await admin.get("/admin/orders?reason=manual_review")
    assert ids(listing) == ["U-1"]

    status, view = await admin.resolve("U-1", {"status": "succeeded", "note": "delivered, says the carrier"})
    assert status == 200
    assert (view["status"], view["reason"], view["delivered_value"]) == ("succeeded", None, "50")
    assert view["incidents"][-1]["detail"] == "admin: delivered, says the carrier"
    _, listing = await admin.get("/admin/orders?reason=manual_review")
    assert listing["count"] == 0


async def test_a_final_order_cannot_be_resolved(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    _, order = await d.shop.place(order_id="F-1", wait_seconds=5)
    assert order["status"] == "succeeded"
    admin = Admin(d)
    status, body = await admin.resolve("F-1", {"status": "failed", "note": "refund it"})
    assert (status, body["error"]["code"]) == (409, "order_final")
    _, again = await d.shop.get("F-1")
    assert again == order


async def test_malformed_resolutions_are_400_with_every_problem(gateway: Gateway) -> None:
    d, admin = await unknown_order(gateway)
    cases: list[tuple[Any, str | None, set[str]]] = [
        (b"{", None, {"body"}),
        (b"", None, {"body"}),
        (b'["failed"]', None, {"body"}),
        (b"{", "x" * 65, {"body", "X-Operator"}),
        ({}, None, {"status", "note"}),
        ({"status": "processing", "note": "x"}, None, {"status"}),
        ({"status": "partial", "note": "x"}, None, {"status"}),
        ({"status": "FAILED", "note": "x"}, None, {"status"}),
        ({"status": True, "note": 5}, None, {"status", "note"}),
        ({"status": "failed", "note": ""}, None, {"note"}),
        ({"status": "failed", "note": " \n "}, None, {"note"}),
        ({"status": "failed", "note": "x" * 1001}, None, {"note"}),
        ({"status": "failed", "note": "x", "by": "me"}, None, {"by"}),
        ({"status": "failed", "note": "x"}, "", {"X-Operator"}),
        ({"status": "failed", "note": "x"}, "x" * 65, {"X-Operator"}),
        ({"status": "done", "reason": "x"}, "x" * 65, {"status", "note", "reason", "X-Operator"}),
    ]
    for doc, operator, problems in cases:
        status, body = await admin.resolve("U-1", doc, operator=operator)
        assert status == 400, doc
        assert body["error"]["code"] == "invalid_request", doc
        assert fields(body) == problems, doc
    _, order = await d.shop.get("U-1")
    assert (order["status"], order["reason"]) == ("processing", "outcome_unknown")
    # Validation comes first: a malformed request about an unknown order is still a 400.
    status, _ = await admin.resolve("NOPE", {"status": "failed"})
    assert status == 400


# -- the token -------------------------------------------------------------------------------


async def test_order_endpoints_need_the_token(gateway: Gateway) -> None:
    d, _ = await unknown_order(gateway)
    body = orjson.dumps({"status": "failed", "note": "x"})
    calls = [
        ("GET", "/admin/orders", None),
        ("GET", f"/admin/orders/{SHOP}/U-1", None),
        ("POST", f"/admin/orders/{SHOP}/U-1/resolve", body),
    ]
    for token in (None, "wrong", ""):
        for method, path, data in calls:
            status, error = await Admin(d, token).call(method, path, data)
            assert (status, error["error"]["code"]) == (401, "unauthenticated"), (token, path)
    _, order = await d.shop.get("U-1")
    assert order["status"] == "processing"


async def test_order_endpoints_refuse_everything_without_a_configured_token(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()}, admin_token="")
    await d.shop.place(order_id="T-1", wait_seconds=5)
    body = orjson.dumps({"status": "failed", "note": "x"})
    for method, path, data in (
        ("GET", "/admin/orders", None),
        ("GET", f"/admin/orders/{SHOP}/T-1", None),
        ("POST", f"/admin/orders/{SHOP}/T-1/resolve", body),
    ):
        for token in ("", "admin-token"):
            status, error = await Admin(d, token).call(method, path, data)
            assert (status, error["error"]["code"]) == (403, "forbidden"), path
