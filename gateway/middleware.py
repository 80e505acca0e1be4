"""The two middlewares every request passes: HTTP metrics, and the one place errors become contract JSON."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import (
    ApiError,
    BodyTooLarge,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    StoreUnavailable,
    UnsupportedMediaType,
)
from gateway.logs import get_logger
from gateway.metrics import Metrics, RouteMetrics
from gateway.store import StoreError

log = get_logger(__name__)
ROUTE_METRICS: Final = web.AppKey("route_metrics", dict)  # resource -> RouteMetrics, bound at start-up
REFUSALS: Final = web.AppKey("refusals", Metrics)  # where refusals before the charge are counted
UNMATCHED: Final = "unmatched"
SHOP: Final = web.RequestKey("shop", str)  # the shop a request was authenticated as
# Refusals before the charge (CONTRACT.md §7, §8), counted by shop and code.
REFUSAL_CODES: Final = frozenset(
    {
        "invalid_account",
        "carrier_mismatch",
        "duplicate_suspected",
        "account_limit_exceeded",
        "account_blocked",
        "rate_limited",
        "too_many_streams",
    }
)


def json_response(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    body: dict[str, object] = {"code": error.code, "message": error.message}
    if error.details is not None:
        body["details"] = list(error.details)
    return json_response({"error": body}, error.http_status, error.headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return BodyTooLarge("the request body is larger than server.max_body_bytes")
    if isinstance(exc, web.HTTPNotFound):
        return NotFound("no such resource")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(
            f"method not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}",
            headers={"Allow": ",".join(sorted(exc.allowed_methods))},
        )
    if isinstance(exc, web.HTTPUnsupportedMediaType):
        return UnsupportedMediaType(exc.text or "unsupported media type")
    if exc.status < 500:
        return InvalidRequest(exc.reason)
    return InternalError("internal error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        if exc.code in REFUSAL_CODES:
            _count_refusal(request, exc.code)
        response = error_response(exc)
        if exc.closes_connection:
            await _answer_and_close(request, response)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(exc))
    except StoreError as exc:
        # Whatever was asked, the store could not be read or written: nothing was done, and a
        # shop (or a supplier calling back) may send it again.
        log.warning("request_refused_store_unavailable", path=request.path, error=str(exc))
        return error_response(StoreUnavailable("the store is unavailable; send the request again later"))
    except Exception:
        log.exception("request_failed", path=request.path, method=request.method)
        return error_response(InternalError("internal error"))


def _count_refusal(request: web.Request, code: str) -> None:
    """`gateway_shop_requests_refused_total{shop, code}`, for a request whose shop is known.

    A request refused for its rate was not yet marked with its shop, but its signature held: the
    shop it names is the one that sent it.
    """
    shop = request.get(SHOP) or (request.headers.get("X-Shop-Id") if code == "rate_limited" else None)
    metrics = request.app.get(REFUSALS)
    if shop and metrics is not None:
        metrics.refused(shop, code)


async def _answer_and_close(request: web.Request, response: web.Response) -> None:
    """Send `response` now, then close the connection without reading what the client still sends.

    Left to itself, aiohttp would keep reading an unread body for its lingering time (10 s) before
    closing: the very hold on a connection that a body read deadline is there to end.
    """
    response.force_close()  # Connection: close
    with contextlib.suppress(ConnectionError):  # gone already: there is nobody to answer
        await response.prepare(request)
        await response.write_eof()
    # Closes once the answer is flushed, and tells aiohttp not to read on.
    request.protocol.force_close()


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        routes: dict[object, RouteMetrics] = request.app[ROUTE_METRICS]
        resource = request.match_info.route.resource
        metrics = routes.get(resource) or routes[UNMATCHED]
        metrics.observe(status, time.perf_counter() - started)
