"""Supplier callbacks at `/callbacks/{supplier}`: verify with the supplier's adapter, apply once, acknowledge.

A bad signature is 401 and changes nothing; an upstream id we never sent is refused, not acknowledged.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from adapters.interface import BadSignature, InboundCallback, MalformedMessage
from gateway.errors import InvalidRequest, NotFound, Unauthenticated, UnknownOrder
from gateway.lifecycle import Source
from gateway.logs import get_logger
from gateway.orders import ReportResult
from gateway.runtime import RUNTIME

log = get_logger(__name__)
routes = web.RouteTableDef()
FORM: Final = "application/x-www-form-urlencoded"
# The methods suppliers call back with: the route takes any method and refuses the others with 405.
METHODS: Final = ("GET", "POST")


@routes.route("*", "/callbacks/{supplier}")
async def supplier_callback(request: web.Request) -> web.Response:
    if request.method not in METHODS:
        raise web.HTTPMethodNotAllowed(request.method, list(METHODS))
    runtime = request.app[RUNTIME]
    name = request.match_info["supplier"]
    supplier = runtime.suppliers.get(name)
    if supplier is None:
        raise NotFound(f"no supplier {name!r}")
    if request.method == "GET":
        # A supplier that calls back by GET sends its form in the query string: the adapter reads
        # it as that form, raw (percent-encoded in the supplier's own charset, as a POST body is).
        body = request.rel_url.raw_query_string.encode("utf-8", "surrogateescape")
        content_type = FORM
    else:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
    callback = InboundCallback(
        method=request.method, query=dict(request.query), content_type=content_type, body=body
    )
    counters = supplier.metrics.callbacks
    try:
        reply = supplier.adapter.parse_callback(callback)
    except BadSignature:
        counters["bad_signature"].inc()
        log.warning("callback_refused", supplier=name, why="bad_signature")
        raise Unauthenticated("signature") from None
    except MalformedMessage as exc:
        counters["malformed"].inc()
        log.warning("callback_refused", supplier=name, why="malformed", error=str(exc))
        raise InvalidRequest(f"unreadable callback: {exc}") from None

    # A result the signature does not cover is only a claim: a query confirms it first.
    source = Source.CALLBACK if supplier.adapter.callback_signs_result else Source.UNSIGNED_CALLBACK
    result = await runtime.orders.report(name, reply, source=source)
    counters[result].inc()
    log.info(
        "callback_received",
        supplier=name,
        upstream_order_id=reply.upstream_order_id,
        verdict=reply.verdict.value,
        result=result,
    )
    if result == ReportResult.UNKNOWN_ORDER:
        raise UnknownOrder(f"no order with upstream id {reply.upstream_order_id!r} went to {name!r}")
    ack = supplier.adapter.acknowledge()
    return web.Response(status=ack.status, body=ack.body, headers={"Content-Type": ack.content_type})
