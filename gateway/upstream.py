"""The only network I/O to suppliers: one shared `ClientSession`, per-supplier timeouts, outcome-safe errors.

The line it draws: a request that certainly never left (connect refused, DNS, connect timeout)
is `not_executed`; anything that may have reached the supplier (timeout or reset after sending,
a truncated or oversized body) is `unknown`. aiohttp's exceptions are mapped here and nowhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp

from adapters.interface import HttpReply, HttpRequest, SupplierReply, Verdict
from gateway.logs import get_logger
from gateway.suppliers import Supplier

MAX_REPLY_BYTES: Final = 1024 * 1024
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request's fate: a reply, or why there is none and whether it may have been received."""

    reply: HttpReply | None
    sent: bool
    error: str | None
    seconds: float


class ReplyTooLarge(Exception):
    pass


class Upstream:
    """Sends adapter-built requests and hands replies back to the adapter to classify."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def submit(
        self, supplier: Supplier, upstream_order_id: str, request: HttpRequest
    ) -> tuple[SupplierReply, Exchange]:
        exchange = await self._exchange(supplier, request, "submit")
        if exchange.reply is not None:
            try:
                reply = supplier.adapter.parse_submit(upstream_order_id, exchange.reply)
            except Exception as exc:  # an adapter bug must not lose the order: the supplier may have charged
                log.exception(
                    "supplier_reply_unparsed", supplier=supplier.name, upstream_order_id=upstream_order_id
                )
                reply = SupplierReply(
                    upstream_order_id=upstream_order_id,
                    verdict=Verdict.UNKNOWN,
                    message=f"unreadable reply: {exc}",
                )
        else:
            reply = _transport_reply(upstream_order_id, exchange)
        supplier.metrics.requests["submit", reply.outcome].inc()
        return reply, exchange

    async def query(
        self, supplier: Supplier, upstream_order_ids: Sequence[str], timestamp: float
    ) -> tuple[Mapping[str, SupplierReply], Exchange]:
        request = supplier.adapter.build_query(upstream_order_ids, timestamp)
        exchange = await self._exchange(supplier, request, "query")
        replies: Mapping[str, SupplierReply] | None = None
        if exchange.reply is not None:
            try:
                replies = supplier.adapter.parse_query(upstream_order_ids, exchange.reply)
            except Exception:
                log.exception("supplier_reply_unparsed", supplier=supplier.name, operation="query")
        if replies is None:
            # A query that failed tells nothing about the orders: they stay as they were.
            replies = {
                uid: SupplierReply(upstream_order_id=uid, verdict=Verdict.UNKNOWN, message=exchange.error)
                for uid in upstream_order_ids
            }
        for reply in replies.values():
            supplier.metrics.requests["query", reply.outcome].inc()
        return replies, exchange

    async def _exchange(self, supplier: Supplier, request: HttpRequest, operation: str) -> Exchange:
        metrics = supplier.metrics
        started = time.perf_counter()
        try:
            reply = await self._send(supplier, request)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL) as exc:
            return Exchange(
                None, False, f"not sent: {type(exc).__name__}: {exc}", time.perf_counter() - started
            )
        except TimeoutError:
            return Exchange(
                None, True, f"no reply within {supplier.config.timeout:g}s", time.perf_counter() - started
            )
        except ReplyTooLarge:
            return Exchange(None, True, f"reply over {MAX_REPLY_BYTES} bytes", time.perf_counter() - started)
        except (aiohttp.ClientError, OSError) as exc:
            return Exchange(
                None, True, f"after sending: {type(exc).__name__}: {exc}", time.perf_counter() - started
            )
        finally:
            seconds = time.perf_counter() - started
            metrics.duration[operation].observe(seconds)
        return Exchange(reply, True, None, seconds)

    async def _send(self, supplier: Supplier, request: HttpRequest) -> HttpReply:
        async with (
            asyncio.timeout(supplier.config.timeout),
            self._session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body or None,
                timeout=supplier.timeout,
                allow_redirects=False,
            ) as response,
        ):
            body = await _read_limited(response)
            return HttpReply(status=response.status, headers=response.headers, body=body)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    length = response.content_length
    if length is not None and length > MAX_REPLY_BYTES:
        raise ReplyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise ReplyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _transport_reply(upstream_order_id: str, exchange: Exchange) -> SupplierReply:
    verdict = Verdict.UNKNOWN if exchange.sent else Verdict.NOT_EXECUTED
    return SupplierReply(
        upstream_order_id=upstream_order_id, verdict=verdict, code=None, message=exchange.error
    )


def new_session() -> aiohttp.ClientSession:
    """The one client session for all suppliers (and shop notifications)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "supplier-gateway/0.1"},
    )
