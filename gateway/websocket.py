"""`GET /v1/orders/ws` and `POST /v1/stream-tokens` (CONTRACT.md §8): the shop's order events over a
WebSocket, and the short-lived tokens a browser opens it with.

Only translates the event hub to JSON text frames and a client's resume request to a subscription; the
subscription, its cap and heartbeats are the relay's (`relay.py`), shared with the SSE stream
(`stream.py`), and tokens are `streamtokens.py`'s. Every refusal (401, 429, 503) is an HTTP answer given
before the upgrade; once upgraded, nothing a client sends can make the handler raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, assert_never

import orjson
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from gateway.api import read_body
from gateway.cancellation import cancel_and_wait
from gateway.errors import InvalidRequest, StoreUnavailable, Unauthenticated, UnsupportedMediaType
from gateway.events import Item, OrderEvent, Reset, Subscription
from gateway.logs import get_logger
from gateway.middleware import SHOP, json_response
from gateway.relay import open_subscription, relay, relaying, write_deadline
from gateway.runtime import RUNTIME, Runtime
from gateway.stream import MAX_EVENT_ID_CHARS, refuse_unknown_parameters
from gateway.streamtokens import StreamTokens, read_token_request
from gateway.views import iso_time, public_view

log = get_logger(__name__)
routes = web.RouteTableDef()

PATH: Final = "/v1/orders/ws"
TOKENS_PATH: Final = "/v1/stream-tokens"
QUERY_PARAMETERS: Final = frozenset({"token"})
# A client only ever sends a resume request: anything near this size is not one (aiohttp closes 1009).
MAX_MESSAGE_BYTES: Final = 4096
# How long closing waits for the client's answering close frame.
CLOSE_TIMEOUT_SECONDS: Final = 5.0
PING: Final = b'{"type":"ping"}'
RESET_MESSAGE: Final = (
    "events were missed; re-read the orders you follow with GET /v1/orders/{order_id}, or, with a token "
    "for one order, reconnect without resuming to receive that order as it is now"
)
_CLOSED: Final = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketSettings:
    """Timings of the order WebSocket; put under `SOCKET_SETTINGS` before the app starts to change them."""

    ping_seconds: float = 20.0  # CONTRACT.md §8: a ping every 20 s
    # How long a new socket holds events back for the client's first message, which may ask to resume:
    # events sent before it would come out of order with the replay. A client that will not resume
    # ends the wait at once by sending `{"type": "resume", "last_event_id": null}`.
    resume_wait_seconds: float = 2.0


SOCKET_SETTINGS: Final = web.AppKey("order_socket_settings", SocketSettings)
DEFAULT_SETTINGS: Final = SocketSettings()


def socket_message(item: Item) -> bytes:
    """The text frame of an event or a reset."""
    match item:
        case OrderEvent():
            # The order JSON as the hub serialised it once, for every subscriber and both transports.
            return orjson.dumps({"type": "order", "id": item.id, "order": orjson.Fragment(item.data)})
        case Reset():
            return orjson.dumps(
                {"type": "reset", "id": item.id, "reason": item.reason.value, "message": RESET_MESSAGE}
            )
        case _:
            assert_never(item)


def stream_tokens(runtime: Runtime) -> StreamTokens:
    """Tokens checked against the shops' secrets of the configuration in force (a reload replaces it)."""

    def secret_of(shop: str) -> bytes | None:
        config = runtime.config.shops.get(shop)
        return config.secret.reveal().encode() if config is not None else None

    return StreamTokens(secret_of, runtime.clock)


@routes.post(TOKENS_PATH)
async def mint_stream_token(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    content_type = request.headers.get("Content-Type")
    body = await read_body(request)
    shop = await runtime.auth.authenticate("POST", request.raw_path, request.headers, body)
    request[SHOP] = shop
    if content_type is not None and "json" not in content_type.lower():
        raise UnsupportedMediaType("send the token request as application/json")
    token, grant = stream_tokens(runtime).mint(shop, read_token_request(body))
    return json_response({"token": token, "expires_at": iso_time(grant.expires_at)}, 201)


async def _authorize(request: web.Request, runtime: Runtime) -> tuple[str, str | None]:
    """The shop the upgrade is for and the one order it may see (None: all), or `Unauthenticated`.

    With `?token=` the token alone decides (a browser cannot sign); without, the signed headers of §1.
    """
    token = request.query.get("token")
    if token is None:
        shop = await runtime.auth.authenticate("GET", request.raw_path, request.headers, b"")
        order_id = None
    else:
        grant = stream_tokens(runtime).verify(token)
        claimed = request.headers.get("X-Shop-Id")
        if claimed is not None and claimed != grant.shop:
            raise Unauthenticated("token")  # a token never speaks for another shop than its own
        shop, order_id = grant.shop, grant.order_id
    request[SHOP] = shop  # refusals from here on (too_many_streams) are counted for this shop
    refuse_unknown_parameters(request, QUERY_PARAMETERS)
    return shop, order_id


@routes.get(PATH)
async def order_socket(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    shop, order_id = await _authorize(request, runtime)
    ws = web.WebSocketResponse(
        max_msg_size=MAX_MESSAGE_BYTES, timeout=CLOSE_TIMEOUT_SECONDS, autoping=True, heartbeat=None
    )
    if not ws.can_prepare(request).ok:
        raise InvalidRequest(f"GET {PATH} is a WebSocket: send an upgrade request (Upgrade: websocket)")
    # Before the upgrade: over the shop's cap is 429, a feed that cannot read where to start 503.
    subscription = await open_subscription(runtime, shop, None)
    socket = _OrderSocket(request, ws, runtime, subscription, order_id)
    async with relaying(request, socket.close_subscription):
        snapshot = await socket.snapshot()  # a store that cannot be read is 503, still before the upgrade
        await ws.prepare(request)
        try:
            await socket.run(snapshot, request.app.get(SOCKET_SETTINGS, DEFAULT_SETTINGS))
        except (ConnectionResetError, TimeoutError):
            raise  # the relay's to handle
        except Exception:
            # After the upgrade there is no HTTP answer to give: close the socket instead of raising.
            log.exception("order_socket_failed", shop=shop)
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
    return ws


class _ResumeRefused(Exception):
    """The client's resume request cannot be honoured: the socket closes with `code`."""

    def __init__(self, code: WSCloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _OrderSocket:
    """One upgraded connection: its subscription (replaced if the client resumes); the relay's `Outlet`."""

    __slots__ = ("_order_id", "_request", "_runtime", "_ws", "subscription")

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        runtime: Runtime,
        subscription: Subscription,
        order_id: str | None,
    ) -> None:
        self._request = request
        self._ws = ws
        self._runtime = runtime
        self._order_id = order_id
        self.subscription = subscription

    def close_subscription(self) -> None:
        self.subscription.close()

    async def snapshot(self) -> bytes | None:
        """For a one-order token, that order as it is now: a browser cannot read it any other way.

        Read after the subscription is placed, so every later change comes as an event after it. Its id
        is the place the subscription starts at: resuming from it misses nothing.
        """
        start_id = self.subscription.start_id
        if self._order_id is None or not start_id:
            return None
        order = await self._runtime.store.get_order(self.subscription.shop, self._order_id)
        if order is None:
            return None  # not placed yet: its first event will say it
        return orjson.dumps({"type": "order", "id": start_id, "order": public_view(order)})

    async def run(self, snapshot: bytes | None, settings: SocketSettings) -> None:
        """Take the client's resume request, if any, then relay until either side ends."""
        try:
            if await self._resumed(settings.resume_wait_seconds):
                snapshot = None  # the replay brings what was missed; the client has the rest
        except _ResumeRefused as refused:
            await self._ws.close(code=refused.code, message=refused.message.encode())
            return
        if self._ws.closed:
            return
        if snapshot is not None:
            async with write_deadline():
                await self._ws.send_frame(snapshot, WSMsgType.TEXT)
        listener = asyncio.create_task(self._listen(), name="order-socket-listener")
        try:
            ended = await relay(
                self.subscription,
                self,
                settings.ping_seconds,
                order_id=self._order_id,
                beat_when_idle=False,  # a ping every `ping_seconds`, busy or not: clients may time it
            )
        finally:
            await cancel_and_wait([listener])
        if ended:
            # The gateway is stopping, or the client fell too far behind (its last frame was a reset).
            await self._ws.close(code=WSCloseCode.GOING_AWAY, message=b"stream ended; reconnect")

    async def _resumed(self, wait_seconds: float) -> bool:
        """Wait up to `wait_seconds` for the client's first message; True if it resumed from an id."""
        if wait_seconds <= 0:  # aiohttp reads a zero timeout as none at all
            return False
        try:
            message = await self._ws.receive(timeout=wait_seconds)
        except TimeoutError:
            return False
        if message.type in _CLOSED:
            self.subscription.close()
            return False
        last_event_id = _resume_request(message)
        if not last_event_id:
            return False
        try:
            self.subscription = await open_subscription(
                self._runtime,
                self.subscription.shop,
                last_event_id[:MAX_EVENT_ID_CHARS],  # at worst a reset, as for SSE's Last-Event-ID
                replacing=self.subscription,
            )
        except StoreUnavailable:
            raise _ResumeRefused(WSCloseCode.TRY_AGAIN_LATER, "store unavailable; try again later") from None
        return True

    async def _listen(self) -> None:
        """Read what the client sends after the start: a close ends the relay, anything else is ignored
        except a resume from an id, which can no longer be honoured in order."""
        while True:
            message = await self._ws.receive()
            if message.type in _CLOSED:
                break
            try:
                late = bool(_resume_request(message))  # "from now" again changes nothing
            except _ResumeRefused:
                late = True
            if late:
                await self._ws.close(
                    code=WSCloseCode.POLICY_VIOLATION,
                    message=b"resume only as the first message; reconnect to resume",
                )
                break
        self.subscription.close()

    # -- the relay's Outlet ----------------------------------------------------------------

    async def send(self, items: Sequence[Item]) -> None:
        for item in items:
            await self._ws.send_frame(socket_message(item), WSMsgType.TEXT)

    async def beat(self) -> None:
        await self._ws.send_frame(PING, WSMsgType.TEXT)

    def hung_up(self) -> bool:
        transport = self._request.transport
        return self._ws.closed or transport is None or transport.is_closing()


def _resume_request(message: WSMessage) -> str | None:
    """The `last_event_id` of a resume request ("" for one without), None for any other message.

    Anything that is not a JSON object with a `type` is not a request at all and is ignored; a resume
    whose `last_event_id` is neither a string nor null raises `_ResumeRefused`.
    """
    if message.type is not WSMsgType.TEXT:
        return None
    try:
        doc: Any = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") != "resume":
        return None
    last_event_id = doc.get("last_event_id")
    if last_event_id is None:
        return ""
    if not isinstance(last_event_id, str):
        raise _ResumeRefused(WSCloseCode.POLICY_VIOLATION, "resume: last_event_id must be a string or null")
    return last_event_id
