"""`GET /v1/orders/events`: the authenticated shop's order events as Server-Sent Events.

Only translates the event hub to the SSE wire format; buffering, resuming and the slow-reader bound are
the hub's (`events.py`), where events come from is its feed's. Authenticated exactly like
`GET /v1/orders/{order_id}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final, assert_never

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest
from gateway.events import Item, OrderEvent, Reset, Subscription
from gateway.logs import get_logger
from gateway.runtime import RUNTIME

log = get_logger(__name__)
routes = web.RouteTableDef()

PATH: Final = "/v1/orders/events"
QUERY_PARAMETERS: Final = frozenset({"last_event_id"})
MAX_EVENT_ID_CHARS: Final = 64
# A client that has not taken a write in this long is not reading: its stream is closed.
WRITE_TIMEOUT_SECONDS: Final = 30.0
# How soon an idle stream notices that its client hung up. aiohttp tells a handler only when it
# writes, and an idle stream writes only a heartbeat; until then the stream would hold one of its
# shop's `max_streams` slots, and a client reconnecting at once would be refused.
HANGUP_CHECK_SECONDS: Final = 1.0
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


def _last_event_id(request: web.Request) -> str | None:
    unknown = set(request.query) - QUERY_PARAMETERS
    if unknown:
        raise InvalidRequest(
            "unknown query parameters",
            details=[{"field": name, "message": "unknown parameter"} for name in sorted(unknown)],
        )
    value = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    # Whatever the client sends back is at worst a reset, never an error: browsers resend it as is.
    return value[:MAX_EVENT_ID_CHARS] if value else None


@routes.get(PATH)
async def order_events(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    shop = await runtime.auth.authenticate("GET", request.raw_path, request.headers, b"")
    shop_config = runtime.config.shops.get(shop)
    subscription = runtime.events.subscribe(
        shop,
        _last_event_id(request),
        max_streams=shop_config.max_streams if shop_config is not None else None,
    )
    response = web.StreamResponse(headers=HEADERS)
    try:
        # Before the response starts: a feed that cannot read where to start answers 503 instead.
        start_id = await subscription.opened()
        await response.prepare(request)
        await _pump(request, response, subscription, start_id, runtime.events.heartbeat_seconds)
    except ConnectionResetError:
        pass  # the client hung up: nothing more can be sent to it
    except TimeoutError:
        # The client stopped reading; aborting frees the connection rather than waiting on it again.
        if request.transport is not None:
            request.transport.abort()
    finally:
        subscription.close()
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    subscription: Subscription,
    start_id: str,
    heartbeat_seconds: float,
) -> None:
    loop = asyncio.get_running_loop()
    await _write(response, (_opening(start_id),))
    written_at = loop.time()
    while True:
        items = await subscription.next(min(HANGUP_CHECK_SECONDS, heartbeat_seconds))
        if items is None:
            break
        if items:
            await _write(response, (sse_frame(item) for item in items))
        elif request.transport is None or request.transport.is_closing():
            return  # the client hung up: end now and free the slot
        elif loop.time() - written_at >= heartbeat_seconds:
            await _write(response, (HEARTBEAT,))
        else:
            continue
        written_at = loop.time()
    await response.write_eof()


async def _write(response: web.StreamResponse, frames: Iterable[bytes]) -> None:
    # One write per batch: a burst of events costs one syscall, not one per event.
    async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
        await response.write(b"".join(frames))


async def end_streams(app: web.Application) -> None:
    """`on_shutdown`: end every stream, so the server's shutdown does not wait for clients to hang up."""
    runtime = app.get(RUNTIME)
    if runtime is not None:
        runtime.events.close()
