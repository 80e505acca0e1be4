"""The OpenAPI document of the shop listener (CONTRACT.md §1, §2, §7, §8): every route it serves.

What each route answers, in the words of the contract; the routes themselves are `api.py`'s, `stream.py`'s,
`websocket.py`'s and `callbacks.py`'s. A test compares this document with the application's router.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import orjson
from pydantic import BaseModel

from gateway import callbacks, stream, websocket
from gateway.auth import WINDOW_SECONDS
from gateway.errors import (
    AccountBlocked,
    AccountLimitExceeded,
    ApiError,
    BodyTooLarge,
    CarrierMismatch,
    DuplicateSuspected,
    InternalError,
    InvalidAccount,
    InvalidRequest,
    NoSupplierAvailable,
    NotFound,
    OrderIdConflict,
    OrderNotFound,
    ProductNotAllowed,
    RateLimited,
    RequestTimeout,
    StoreUnavailable,
    TooManyStreams,
    Unauthenticated,
    UnknownOrder,
    UnknownProduct,
    UnsupportedMediaType,
)
from gateway.openapi.document import HTTP_LIMITS, Document, Operation, Payload, Reply, Schema, parameter, ref
from gateway.openapi.models import (
    ORDER_EXAMPLE,
    Order,
    OrderRequest,
    SocketMessage,
    StreamReset,
    StreamToken,
    StreamTokenRequest,
)

PATH: Final = "/v1/openapi.json"
API_VERSION: Final = "1"

SECURITY_SCHEMES: Final = {
    "ShopId": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Shop-Id",
        "description": "The shop's id in gateway.yaml. Sent with X-Timestamp, X-Nonce and X-Signature.",
    },
    "Timestamp": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Timestamp",
        "description": f"Unix seconds; refused more than {WINDOW_SECONDS:g} s from the gateway's clock.",
    },
    "Nonce": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Nonce",
        "description": "8 to 64 of `[A-Za-z0-9_-]`, fresh for every request: refused if this shop used it "
        "within the timestamp window (across restarts and instances).",
    },
    "Signature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Signature",
        "description": "Lower hex HMAC-SHA256, keyed with the shop's secret, of "
        "`METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY`: METHOD as sent (`GET`, `POST`), PATH with its query "
        "string exactly as on the request line, TIMESTAMP and NONCE as in their headers, BODY the raw "
        "bytes of the body (empty for GET). A failure is `401 unauthenticated` saying only `signature`, "
        "`timestamp` or `nonce`, the same for a shop id that does not exist.",
    },
    "StreamToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "A token from `POST /v1/stream-tokens`, for a browser, which cannot sign: it alone "
        "opens the WebSocket, for its shop (and, if it names one, only that order's events).",
    },
}
Requirements = tuple[dict[str, list[str]], ...]
# The four headers together (one requirement naming all four schemes).
SIGNED: Final[Requirements] = ({"ShopId": [], "Timestamp": [], "Nonce": [], "Signature": []},)
NONE: Final[Requirements] = ()

# Every signed request: the signature, the shop's request rate (before its nonce is spent), the nonce store.
SIGNED_ERRORS: Final[dict[type[ApiError], str]] = {
    Unauthenticated: "the signed headers do not hold: `signature`, `timestamp` or `nonce`",
    RateLimited: "the shop sends faster than its `rate_limit`; the nonce was not spent, send it again later",
    StoreUnavailable: "the store cannot record the request now; nothing was done, send it again later",
    InternalError: "an unexpected failure inside the gateway",
}
BODY_ERRORS: Final[dict[type[ApiError], str]] = {
    RequestTimeout: "the body did not fully arrive within 5 s; the connection is closed",
    BodyTooLarge: "the body is larger than `server.max_body_bytes`",
    UnsupportedMediaType: "a Content-Type that is not JSON",
}
ORDER: Final = "an order (CONTRACT.md §1): `status` may already be final if it ended within `wait_seconds`"
LINKS: Final[dict[str, Schema]] = {
    "GetOrder": {
        "operationId": "getOrder",
        "parameters": {"order_id": "$response.body#/order_id"},
        "description": "the order as it is now",
    },
    "PlaceOrderAgain": {
        "operationId": "placeOrder",
        "requestBody": "$request.body",
        "description": "the same order_id with the same body again: `200` and the stored order, never a "
        "second order or charge",
    },
}


def place_order() -> Operation:
    return Operation(
        method="POST",
        path="/v1/orders",
        operation_id="placeOrder",
        summary="Place one recharge order",
        tags=("orders",),
        description="The `order_id` is the idempotency key: the same `order_id` with the same fields "
        "(`order_id`, `product`, `account`, `quantity`, `notify_url`) answers `200` and the stored order; "
        "with other fields `409 order_id_conflict`. Every check below answers before anything is recorded "
        "or sent to a supplier. With a `notify_url`, the final order is POSTed to it, signed with "
        "`X-Gateway-Timestamp` and `X-Gateway-Signature` = lower hex HMAC-SHA256(shop secret, "
        "`TIMESTAMP\\nBODY`), until a 2xx acknowledges it.",
        payload=Payload(description="the order request", model=OrderRequest),
        replies={
            201: Reply(description=f"a new order accepted: {ORDER}", model=Order, links=LINKS),
            200: Reply(
                description="the same order_id and body again: the stored order, as it is now",
                model=Order,
                links=LINKS,
            ),
        },
        errors={
            InvalidRequest: "malformed JSON or fields; `details` lists every problem",
            **SIGNED_ERRORS,
            ProductNotAllowed: "the shop may not sell this product",
            AccountBlocked: "an operator blocked this account",
            UnknownProduct: "no such product",
            OrderIdConflict: "the same order_id with a different body",
            DuplicateSuspected: "an order for the same product and account within the shop's "
            "`duplicate_window` that has not failed; `details` names its order_id (send "
            "`allow_duplicate: true` for a second purchase)",
            InvalidAccount: "the account does not fit the product's account kind",
            CarrierMismatch: "the number belongs to another carrier than the product's",
            AccountLimitExceeded: "the account reached the shop's `account_limits` for today (China time)",
            NoSupplierAvailable: "no offer can take the order now; nothing was recorded",
            **BODY_ERRORS,
        },
        security=SIGNED,
    )


def get_order() -> Operation:
    return Operation(
        method="GET",
        path="/v1/orders/{order_id}",
        operation_id="getOrder",
        summary="Read an order",
        tags=("orders",),
        parameters=(parameter("path", "order_id", {"type": "string"}, "the shop's order_id"),),
        replies={200: Reply(description="the order, as it is now", model=Order)},
        errors={**SIGNED_ERRORS, OrderNotFound: "no order with this order_id for this shop"},
        security=SIGNED,
    )


def _event(name: str, data: type[BaseModel]) -> Schema:
    """One kind of Server-Sent Event: its `event` name, an `id`, and JSON `data`."""
    return {
        "type": "object",
        "properties": {
            "event": {"const": name},
            "id": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": ref(data)},
        },
        "required": ["event", "id", "data"],
    }


def order_events() -> Operation:
    return Operation(
        method="GET",
        path=stream.PATH,
        operation_id="orderEvents",
        summary="Follow the shop's orders as Server-Sent Events",
        tags=("streams",),
        description="`event: order` with `data:` the order JSON on every change, `id: <event id>`; "
        '`event: reset` (`data: {"reason", "message"}`) when events were lost: re-read the orders you '
        "follow. Comments keep the connection alive. Reconnect with `Last-Event-ID` (or "
        "`?last_event_id=`, signed) to receive exactly what was missed. SSE and WebSocket streams count "
        "together against `shops.*.max_streams`.",
        parameters=(
            parameter("query", "last_event_id", {"type": "string"}, "resume after this event id"),
            parameter("header", "Last-Event-ID", {"type": "string"}, "as a browser's EventSource sends it"),
        ),
        replies={
            200: Reply(
                description="the stream, until either side ends it; the schema is that of each event",
                content={
                    "text/event-stream": {
                        "schema": {"oneOf": [_event("order", Order), _event("reset", StreamReset)]},
                        "example": {
                            "event": "order",
                            "id": "1763805600000-1",
                            "data": orjson.dumps(ORDER_EXAMPLE).decode(),
                        },
                    }
                },
            )
        },
        models=(Order, StreamReset),
        errors={
            InvalidRequest: "a query parameter other than `last_event_id`",
            **SIGNED_ERRORS,
            TooManyStreams: "the shop already holds `shops.*.max_streams` open streams",
        },
        security=SIGNED,
    )


def order_socket() -> Operation:
    return Operation(
        method="GET",
        path=websocket.PATH,
        operation_id="orderSocket",
        summary="Follow the shop's orders over a WebSocket",
        tags=("streams",),
        description="A WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`, "
        "`Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`), authenticated by the signed headers (a shop's "
        "server) or by `?token=` alone (a browser). Text frames from the gateway are JSON (the schema "
        '`SocketMessage`): `{"type": "order", "id", "order"}` on every change, `{"type": '
        '"reset", "id", "reason", "message"}` when events were lost, `{"type": "ping"}` every '
        '20 s. To catch up, the client\'s first message may be `{"type": "resume", "last_event_id": '
        '"<id>"}` (the SSE ids), or with `null` to start at once. Every refusal is an HTTP answer before '
        "the upgrade.",
        replies={
            101: Reply(
                description="switched to the WebSocket protocol",
                headers={
                    "Upgrade": {"schema": {"type": "string", "enum": ["websocket"]}},
                    "Connection": {"schema": {"type": "string"}},
                    "Sec-WebSocket-Accept": {"schema": {"type": "string"}},
                },
            )
        },
        errors={
            InvalidRequest: "not a WebSocket upgrade request, or a query parameter other than `token`",
            **SIGNED_ERRORS,
            Unauthenticated: "the signed headers do not hold, or the token is forged, expired or for "
            "another shop than `X-Shop-Id`",
            TooManyStreams: "the shop already holds `shops.*.max_streams` open streams",
        },
        security=(*SIGNED, {"StreamToken": []}),
        models=(SocketMessage,),
    )


def mint_stream_token() -> Operation:
    return Operation(
        method="POST",
        path=websocket.TOKENS_PATH,
        operation_id="mintStreamToken",
        summary="Mint a short-lived token that opens the WebSocket from a browser",
        tags=("streams",),
        payload=Payload(
            description="what the token sees and for how long", required=False, model=StreamTokenRequest
        ),
        replies={201: Reply(description="the token", model=StreamToken)},
        errors={
            InvalidRequest: "malformed JSON or fields; `details` lists every problem",
            **SIGNED_ERRORS,
            **BODY_ERRORS,
        },
        security=SIGNED,
    )


CALLBACK_ERRORS: Final[dict[type[ApiError], str]] = {
    InvalidRequest: "the callback cannot be read as the supplier's protocol",
    Unauthenticated: "the callback's signature does not hold; nothing changes",
    NotFound: "no supplier of that name",
    UnknownOrder: "an upstream order id the gateway never sent to this supplier",
    StoreUnavailable: "the store cannot record the report now; nothing changes, and the supplier retries",
    InternalError: "an unexpected failure inside the gateway",
}
ACKNOWLEDGED: Final = Reply(
    description="acknowledged in the supplier's own format (every bundled protocol: `success`), whether "
    "the report was applied, a duplicate, or contradicted a final state (kept as an incident)",
    content={"text/plain": {"schema": {"type": "string"}, "example": "success"}},
)
SUPPLIER: Final = parameter(
    "path", "supplier", {"type": "string"}, "the supplier's name in gateway.yaml", example="fulu"
)
FULU_CALLBACK: Final = {
    "order_id": "F2026112210000001",
    "charge_finish_time": "2026-11-22 10:00:07",
    "customer_order_no": "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01",
    "order_status": "success",
    "recharge_description": "充值成功",
    "product_id": "18221081",
    "price": "49.30",
    "buy_num": "1",
    "operator_serial_number": "OP123",
    "sign": "...",
}


def supplier_callbacks() -> tuple[Operation, ...]:
    """One operation per method `callbacks.METHODS` takes (the route is registered for any method)."""
    described = {
        "GET": Operation(
            method="GET",
            path="/callbacks/{supplier}",
            operation_id="supplierCallbackGet",
            summary="A supplier's result report, sent as a query string",
            tags=("callbacks",),
            description="For suppliers that call back by GET: the query string is read as the supplier's "
            "form, raw. Signed and verified by the supplier's own protocol (protocols/), not the shop "
            "scheme.",
            parameters=(
                SUPPLIER,
                parameter(
                    "query",
                    "report",
                    {"type": "object", "additionalProperties": {"type": "string"}},
                    "the supplier's fields, whatever its protocol names them",
                    style="form",
                    explode=True,
                ),
            ),
            replies={200: ACKNOWLEDGED},
            errors=CALLBACK_ERRORS,
            security=NONE,
        ),
        "POST": Operation(
            method="POST",
            path="/callbacks/{supplier}",
            operation_id="supplierCallbackPost",
            summary="A supplier's result report",
            tags=("callbacks",),
            description="The body in the supplier's protocol (protocols/): JSON for fulu, a form for "
            "ofpay, juhe and dayuanren; verified with the supplier's own signature. A duplicate or a "
            "report contradicting a final state is acknowledged (so the supplier stops retrying) and "
            "never changes the order.",
            parameters=(SUPPLIER,),
            payload=Payload(
                description="the supplier's report",
                content={
                    "application/json": {"schema": {"type": "object"}, "example": FULU_CALLBACK},
                    "application/x-www-form-urlencoded": {
                        "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
            ),
            replies={200: ACKNOWLEDGED},
            errors={**CALLBACK_ERRORS, BodyTooLarge: "the body is larger than `server.max_body_bytes`"},
            security=NONE,
        ),
    }
    return tuple(described[method] for method in callbacks.METHODS)


def document_itself() -> Operation:
    return Operation(
        method="GET",
        path=PATH,
        operation_id="shopOpenApi",
        summary="This document",
        tags=("documents",),
        replies={
            200: Reply(
                description="the OpenAPI 3.1 document of the shop listener",
                content={"application/json": {"schema": {"type": "object"}}},
            )
        },
        security=NONE,
    )


def shop_document() -> Document:
    document = Document(
        title="Supplier gateway: shop API",
        version=API_VERSION,
        description="The shop listener (`server.listen`): place and read recharge orders, follow them "
        "live, and the suppliers' callbacks. Shops sign every request (the security schemes below); "
        'errors are `{"error": {"code", "message", "details"?}}` with the codes each response '
        "names. Money is a decimal string, never a float. " + HTTP_LIMITS,
        security_schemes=SECURITY_SCHEMES,
        security=SIGNED,
        tags={
            "orders": "placing and reading orders",
            "streams": "following orders live: Server-Sent Events and WebSocket",
            "callbacks": "suppliers' result reports, in each supplier's own protocol",
            "documents": "this document",
        },
    )
    document.add(
        place_order(),
        get_order(),
        order_events(),
        order_socket(),
        mint_stream_token(),
        *supplier_callbacks(),
        document_itself(),
    )
    return document


@cache
def encoded() -> bytes:
    """The document as served. It depends on the code alone, never on the configuration: built once per
    process, however many applications (tests start hundreds) serve it."""
    return shop_document().encode()
