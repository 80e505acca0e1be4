"""The shop API's refusals over HTTP: each in the contract's error format, none leaving a trace."""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.auth import request_signature
from tests.e2e.harness import Deployment, Gateway, SupplierSpec

GOOD = {"order_id": "E-1", "product": "mobile.cmcc.50", "account": "13800138000"}


async def no_trace(d: Deployment, order_id: str = "E-1") -> None:
    assert await d.runtime.store.get_order("demo", order_id) is None
    assert all(len(sim.requests) == 0 for sim in d.simulators.values())


def error_of(body: Any, code: str) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    return body["error"]  # type: ignore[no-any-return]


async def test_malformed_json_is_400_with_details(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, body, _ = await d.shop.post_raw(b'{"order_id": "E-1",')
    assert status == 400
    assert error_of(body, "invalid_request")["details"][0]["field"] == "body"
    await no_trace(d)


async def test_wrong_types_list_every_field(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, body, _ = await d.shop.post_raw(
        orjson.dumps({"order_id": 1, "product": None, "account": 13800138000, "x": 1})
    )
    assert status == 400
    fields = {detail["field"] for detail in error_of(body, "invalid_request")["details"]}
    assert fields == {"order_id", "product", "account", "x"}


async def test_bad_account_is_422(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, body, _ = await d.shop.post_raw(orjson.dumps({**GOOD, "account": "1380013800"}))
    assert status == 422
    error_of(body, "invalid_account")
    await no_trace(d)


async def test_unknown_and_forbidden_products(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, body, _ = await d.shop.post_raw(orjson.dumps({**GOOD, "product": "mobile.nope"}))
    assert status == 404
    error_of(body, "unknown_product")


async def test_oversized_body_is_413(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()}, server={"max_body_bytes": 1024})
    big = orjson.dumps({**GOOD, "account": "1" * 4000})
    status, body, _ = await d.shop.post_raw(big)
    assert status == 413
    error_of(body, "body_too_large")
    await no_trace(d)


async def test_auth_failures_are_401_and_say_only_which_part(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    body = orjson.dumps(GOOD)
    cases = {
        "signature": {"X-Signature": "0" * 64},
        "timestamp": {"X-Timestamp": str(int(time.time()) - 1000)},
        "nonce": {"X-Nonce": "bad nonce"},
    }
    for part, override in cases.items():
        headers = d.shop.headers("POST", "/v1/orders", body)
        headers.update(override)
        if part == "timestamp":  # re-sign so only the time is wrong
            headers["X-Signature"] = request_signature(
                d.shop.secret, "POST", "/v1/orders", headers["X-Timestamp"], headers["X-Nonce"], body
            )
        async with d.session.post(d.base_url + "/v1/orders", data=body, headers=headers) as response:
            assert response.status == 401
            assert error_of(await response.json(), "unauthenticated")["message"] == part
    async with d.session.post(d.base_url + "/v1/orders", data=body) as response:
        assert response.status == 401
    await no_trace(d)


async def test_replayed_request_is_refused(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    body = orjson.dumps(GOOD)
    headers = d.shop.headers("POST", "/v1/orders", body)
    async with d.session.post(d.base_url + "/v1/orders", data=body, headers=headers) as response:
        assert response.status == 201
    async with d.session.post(d.base_url + "/v1/orders", data=body, headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["error"]["message"] == "nonce"


async def test_non_json_content_type_is_415(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, body, _ = await d.shop.post_raw(orjson.dumps(GOOD), **{"Content-Type": "text/plain"})
    assert status == 415
    error_of(body, "unsupported_media_type")


async def test_unknown_order_and_route_and_method(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    status, body = await d.shop.get("NOPE")
    assert status == 404
    error_of(body, "order_not_found")
    async with d.session.get(d.base_url + "/v2/whatever") as response:
        assert response.status == 404
        error_of(await response.json(), "not_found")
    async with d.session.delete(d.base_url + "/v1/orders") as response:
        assert response.status == 405
        error_of(await response.json(), "method_not_allowed")


async def test_orders_are_private_to_their_shop(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    await d.shop.place(order_id="MINE-1", wait_seconds=0)
    stored = await d.runtime.store.get_order("demo", "MINE-1")
    assert stored is not None
    assert await d.runtime.store.get_order("other", "MINE-1") is None
