"""The shop API's refusals over HTTP: each in the contract's error format, none leaving a trace."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
from yarl import URL

from gateway.api import BODY_TIMEOUT
from gateway.auth import request_signature
from tests.e2e.harness import SECRET, SHOP, Deployment, Gateway, SupplierSpec, after_balance_reads
from tests.e2e.served import served

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


async def raw_exchange(host: str, port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` byte for byte (headers aiohttp's client would not send) and read the answer to EOF."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def signed_head(port: int, body: bytes, **override: bytes) -> bytes:
    timestamp, nonce = str(int(time.time())), "raw-nonce-0001"
    fields = {
        b"Host": f"127.0.0.1:{port}".encode(),
        b"Content-Type": b"application/json",
        b"Content-Length": str(len(body)).encode(),
        b"Connection": b"close",
        b"X-Shop-Id": SHOP.encode(),
        b"X-Timestamp": timestamp.encode(),
        b"X-Nonce": nonce.encode(),
        b"X-Signature": request_signature(
            SECRET.encode(), "POST", "/v1/orders", timestamp, nonce, body
        ).encode(),
    }
    fields.update({name.replace("_", "-").encode(): value for name, value in override.items()})
    return (
        b"POST /v1/orders HTTP/1.1\r\n"
        + b"".join(k + b": " + v + b"\r\n" for k, v in fields.items())
        + b"\r\n"
    )


@pytest.mark.parametrize("signature", ["é".encode() * 32, b"\xff" * 64, b"A" * 64])
async def test_a_non_ascii_or_upper_case_signature_is_401_not_500(
    gateway: Gateway, signature: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    body = orjson.dumps(GOOD)
    host, port = d.server.host, d.server.port
    assert port is not None
    status, _, answer = await raw_exchange(host, port, signed_head(port, body, X_Signature=signature) + body)
    assert status == 401, answer
    assert error_of(orjson.loads(answer), "unauthenticated")["message"] == "signature"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    await no_trace(d)


async def test_unknown_and_known_shops_get_the_same_401_for_each_part(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    body = orjson.dumps(GOOD)
    overrides = [
        {"X-Nonce": "bad nonce"},
        {"X-Nonce": "short"},
        {"X-Timestamp": "later"},
        {"X-Signature": "0" * 64},
        {"X-Signature": "nothex"},
    ]
    for override in overrides:
        answers = []
        for shop in ("demo", "nobody"):
            headers = {**d.shop.headers("POST", "/v1/orders", body), "X-Shop-Id": shop, **override}
            async with d.session.post(d.base_url + "/v1/orders", data=body, headers=headers) as response:
                answers.append((response.status, await response.json()))
        assert answers[0] == answers[1], (override, answers)
        assert answers[0][0] == 401
        assert answers[0][1]["error"]["message"] in ("signature", "timestamp", "nonce")
    await no_trace(d)


async def test_full_width_digits_in_a_phone_number_are_422(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    for account in ("１３８００１３８０００", "138００138０00", "1380013800٠"):
        status, body, _ = await d.shop.post_raw(orjson.dumps({**GOOD, "account": account}))
        assert status == 422, (account, body)
        assert error_of(body, "invalid_account")["details"][0]["field"] == "account"
    await no_trace(d)


BODY_BOUND_SECONDS = 0.3
TRICKLE_GAP_SECONDS = 0.05  # one byte per gap: the whole body would take seconds


async def test_a_body_that_trickles_in_is_408_and_the_connection_closed_within_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served({BODY_TIMEOUT: BODY_BOUND_SECONDS}) as shop:
        port = URL(shop.base_url).port
        assert port is not None
        answer, elapsed = await _trickle(port)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nConnection: close" in head
    assert error_of(orjson.loads(payload), "request_timeout")
    assert BODY_BOUND_SECONDS <= elapsed < BODY_BOUND_SECONDS + 1.0, elapsed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def _trickle(port: int) -> tuple[bytes, float]:
    """A signed order whose body comes one byte per TRICKLE_GAP_SECONDS: the answer, and when it ended."""
    body = orjson.dumps(GOOD)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(signed_head(port, body, Connection=b"keep-alive"))

    async def trickle() -> None:
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(TRICKLE_GAP_SECONDS)

    trickling = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(3):  # the whole body would take len(body) * 50 ms, over 4 s
            answer = await reader.read()  # to EOF: the gateway must close, not wait for more
        elapsed = loop.time() - started
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()
    return answer, elapsed


async def test_a_replay_is_answered_from_the_store_without_asking_any_supplier(gateway: Gateway) -> None:
    """Idempotency is decided before routing: a replay costs no rate-limit slot, probe or wait."""
    once_a_minute = {"rate_limit": {"rate": 1, "per": "60s", "burst": 0}, "balance": {"check_every": "1h"}}
    d = await gateway({"fulu": SupplierSpec(extra=once_a_minute)})
    await after_balance_reads(d, advance=60)  # past the slot the start-up balance read took
    status, first = await d.shop.place(order_id="REPLAY-1", wait_seconds=2)
    assert status == 201
    supplier = d.runtime.suppliers["fulu"]
    admitted = supplier.admissions
    for _ in range(5):
        status, again = await d.shop.place(order_id="REPLAY-1", wait_seconds=2)
        assert (status, again["order_id"], again["status"]) == (200, "REPLAY-1", first["status"])
    assert supplier.admissions == admitted
