"""The shop API (CONTRACT.md §1): place an order, read an order. Handlers only translate HTTP to services."""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from gateway.errors import (
    NoSupplierAvailable,
    OrderIdConflict,
    OrderNotFound,
    RequestTimeout,
    UnsupportedMediaType,
)
from gateway.guards import ACCOUNT_GUARD
from gateway.intake import read_order_request
from gateway.middleware import SHOP, json_response
from gateway.order import Order, OrderRequest
from gateway.runtime import RUNTIME
from gateway.views import public_view

routes = web.RouteTableDef()

# The body is read before the signature can be checked, so anyone can send one: a body that trickles
# in would hold its connection (and the handler) for as long as the sender likes. At the 64 KiB
# default max_body_bytes, 5 s still admits any client sending faster than 13 KB/s.
BODY_TIMEOUT_SECONDS: Final = 5.0
BODY_TIMEOUT: Final = web.AppKey("body_timeout_seconds", float)  # set to override the default


async def read_body(request: web.Request) -> bytes:
    if request.content.is_eof():
        # Already here whole (a small body comes with its headers): nothing to wait for, so no timer.
        return await request.read()
    deadline = request.app.get(BODY_TIMEOUT, BODY_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(deadline):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {deadline:g} s") from None


def _path_qs(request: web.Request) -> str:
    return request.raw_path


@routes.post("/v1/orders")
async def place_order(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    content_type = request.headers.get("Content-Type")
    body = await read_body(request)
    # The nonce's record joins the order's own write (one sync on SQLite): awaited before any answer
    # that says what was done with the request.
    shop, nonce = await runtime.auth.authenticate_pending("POST", _path_qs(request), request.headers, body)
    request[SHOP] = shop
    if content_type is not None and "json" not in content_type.lower():
        raise UnsupportedMediaType("send the order as application/json")
    intake = read_order_request(body, shop, runtime.catalog, runtime.config.orders.sync_wait)

    # Idempotency first: a replay is answered from the store and never costs a supplier's slot,
    # a breaker probe or a wait for the rate limit.
    existing = await runtime.store.get_order(shop, intake.request.order_id)
    if existing is not None:
        await nonce.recorded()
        return _replayed(existing, intake.request)
    # Then the shop guards (CONTRACT.md §7), in this order: blocked, duplicate, limits. The last two
    # reserve the order's place in its account's record, settled below whatever `place` did; an
    # exception in between leaves the reservation to lapse (see guards.py).
    guard = request.app[ACCOUNT_GUARD]
    await guard.check_blocked(intake.request.account, intake.request.product)
    reservation = await guard.reserve(
        shop, intake.request, intake.product, allow_duplicate=intake.allow_duplicate
    )
    plan = runtime.router.plan(intake.product, province=intake.province)
    try:
        order, created = await runtime.orders.place(
            shop, intake.request, intake.product, plan, account_info=intake.account_info
        )
    except NoSupplierAvailable:
        # The same order_id may have been accepted meanwhile (a concurrent retry): that order, not a 503.
        raced = await runtime.store.get_order(shop, intake.request.order_id)
        if raced is None:
            await guard.settle(reservation, None)
            raise
        order, created = raced, False
    await guard.settle(reservation, order)
    await nonce.recorded()
    if not created:
        return _replayed(order, intake.request)
    order = await runtime.orders.wait_final(order, intake.wait_seconds)
    return json_response(public_view(order), 201)


def _replayed(order: Order, request: OrderRequest) -> web.Response:
    """The stored order for the same order_id with the same body; a different body is a conflict."""
    if order.request != request:
        raise OrderIdConflict(f"order_id {request.order_id!r} was used with a different body")
    return json_response(public_view(order), 200)


@routes.get("/v1/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    shop = await runtime.auth.authenticate("GET", _path_qs(request), request.headers, b"")
    request[SHOP] = shop
    order_id = request.match_info["order_id"]
    order = await runtime.store.get_order(shop, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id!r} for this shop")
    return json_response(public_view(order))
