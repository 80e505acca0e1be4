"""`GET /v1/orders/events`: the authenticated shop's order events as Server-Sent Events.

Only translates the event hub to the SSE wire format; buffering, resuming and the slow-reader bound are
the hub's (`events.py`), where events come from is its feed's, and what every transport does alike
(the stream cap, heartbeats, hang-ups, write deadlines) is the relay's (`relay.py`). Authenticated
exactly like `GET /v1/orders/{order_id}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, assert_never

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest
from gateway.events import Item, OrderEvent, Reset
from gateway.logs import get_logger
from gateway.middleware import SHOP
from gateway.relay import open_subscription, relay, relaying, write_deadline
from gateway.runtime import RUNTIME

log = get_logger(__name__)
routes = web.RouteTableDef()

PATH: Final = "/v1/orders/events"
QUERY_PARAMETERS: Final = frozenset({"last_event_id"})
MAX_EVENT_ID_CHARS: Final = 64
HEARTBEAT: Final = b": keep-alive\n\n"
RESET_MESSAGE: Final = "events were missed; re-read the orders you follow with GET /v1/orders/{order_id}"
HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    # Buffering reverse proxies (nginx) would hold events back until a buffer fills.
    "X-Accel-Buffering": "no",
}


def sse_frame(item: Item) -> bytes:
    match item:
        case OrderEvent():
            return b"id: %s\nevent: order\ndata: %s\n\n" % (item.id.encode(), item.data)
        case Reset():
            data = orjson.dumps({"reason": item.reason.value, "message": RESET_MESSAGE})
            return b"id: %s\nevent: reset\ndata: %s\n\n" % (item.id.encode(), data)
        case _:
            assert_never(item)


def _opening(start_id: str) -> bytes:
    # An id with no data sets the client's Last-Event-ID without dispatching an event, so a client
    # that reconnects before its first event still resumes from where it subscribed. A subscription
    # that ended before it was placed has no place to give: an empty id would make the client forget
    # its own.
    if not start_id:
        return b": connected\n\n"
    return b": connected\nid: %s\n\n" % start_id.encode()


def refuse_unknown_parameters(request: web.Request, known: frozenset[str]) -> None:
    """`InvalidRequest` naming every query parameter of `request` not in `known` (a stream's are few)."""
    unknown = set(request.query) - known
    if unknown:
        raise InvalidRequest(
            "unknown query parameters",
            details=[{"field": name, "message": "unknown parameter"} for name in sorted(unknown)],
        )


def _last_event_id(request: web.Request) -> str | None:
    refuse_unknown_parameters(request, QUERY_PARAMETERS)
    value = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    # Whatever the client sends back is at worst a reset, never an error: browsers resend it as is.
    return value[:MAX_EVENT_ID_CHARS] if value else None


@routes.get(PATH)
async def order_events(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    shop = await runtime.auth.authenticate("GET", request.raw_path, request.headers, b"")
    request[SHOP] = shop  # refusals from here on (too_many_streams) are counted for this shop
    # Before the response starts: over the shop's cap is 429, a feed that cannot read where to start 503.
    subscription = await open_subscription(runtime, shop, _last_event_id(request))
    response = web.StreamResponse(headers=HEADERS)
    async with relaying(request, subscription.close):
        await response.prepare(request)
        async with write_deadline():
            await response.write(_opening(subscription.start_id))
        if await relay(subscription, _EventStream(request, response), runtime.events.heartbeat_seconds):
            await response.write_eof()
    return response


class _EventStream:
    """The relay's `Outlet` on an SSE response."""

    __slots__ = ("_request", "_response")

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self._request = request
        self._response = response

    async def send(self, items: Sequence[Item]) -> None:
        # One write per batch: a burst of events costs one syscall, not one per event.
        await self._response.write(b"".join(sse_frame(item) for item in items))

    async def beat(self) -> None:
        await self._response.write(HEARTBEAT)

    def hung_up(self) -> bool:
        return self._request.transport is None or self._request.transport.is_closing()


async def end_streams(app: web.Application) -> None:
    """`on_shutdown`: end every stream, so the server's shutdown does not wait for clients to hang up."""
    runtime = app.get(RUNTIME)
    if runtime is not None:
        runtime.events.close()
