"""The only network I/O to suppliers: a session per supplier, per-supplier timeouts, outcome-safe errors.

The line it draws: a request that certainly never left (connect refused, DNS, connect timeout)
is `not_executed`; anything that may have reached the supplier (timeout or reset after sending,
a truncated or oversized body) is `unknown`. Two things make "never left" true: the client never
re-sends a request on its own (aiohttp retries a GET once on a reused connection that drops, so
a supplier that charged and reset would be charged twice), and once the first byte of a request
was handed to the socket, every later error means "sent", whatever its type. aiohttp's exceptions
are mapped here and nowhere else, and their text, which quotes URLs with credentials in the query
string, never leaves this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Final

import aiohttp
from yarl import URL

from adapters.interface import BalanceReply, HttpReply, HttpRequest, SupplierReply, Verdict
from gateway.logs import get_logger
from gateway.suppliers import Supplier

MAX_REPLY_BYTES: Final = 1024 * 1024
# Past a retired session's supplier timeout: every request on it has ended before it is closed.
RETIRE_GRACE_SECONDS: Final = 5.0
# Raised only before a connection carries any byte of the request (and never by a hidden retry,
# which `_no_resend` rules out): with these, the supplier cannot have seen the request.
NEVER_SENT: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)
log = get_logger(__name__)


@dataclass(slots=True)
class Wire:
    """What happened on the wire to one request: set by the trace hook when its first byte is written."""

    written: bool = False


class ConnectionLost(aiohttp.ClientConnectionError):
    """The connection failed under a request: what aiohttp would have retried, made final."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request's fate: a reply, or why there is none and whether it may have been received."""

    reply: HttpReply | None
    sent: bool
    error: str | None
    seconds: float


class ReplyTooLarge(Exception):
    pass


class SupplierSessions:
    """One client session per supplier, its connection pool capped at the supplier's `max_concurrency`.

    Admission already keeps a supplier's requests in flight within that cap; the pool follows it,
    so a burst leaves no more idle connections behind than the supplier may take at once. A reload
    that changes the cap gets a new session; the old one closes once every request on it has had
    its whole timeout.
    """

    def __init__(self, retire_grace_seconds: float = RETIRE_GRACE_SECONDS) -> None:
        self._grace = retire_grace_seconds
        # supplier -> (its pool's cap, the session, the longest timeout a request on it was given)
        self._sessions: dict[str, tuple[int, aiohttp.ClientSession, float]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: set[aiohttp.ClientSession] = set()

    def of(self, supplier: Supplier) -> aiohttp.ClientSession:
        limit, timeout = supplier.config.max_concurrency, supplier.config.timeout
        held = self._sessions.get(supplier.name)
        if held is not None and held[0] == limit:
            if timeout > held[2]:  # a reload lengthened it: the session's requests may now last longer
                self._sessions[supplier.name] = (limit, held[1], timeout)
            return held[1]
        if held is not None:
            # Closed only once the longest request that may still be on it has had its whole timeout:
            # closing under a request would cut it off after sending.
            self._retire(held[1], after=max(held[2], timeout) + self._grace)
        session = new_session(limit)
        self._sessions[supplier.name] = (limit, session, timeout)
        return session

    def _retire(self, session: aiohttp.ClientSession, after: float) -> None:
        async def close_later() -> None:
            await asyncio.sleep(after)
            self._retired.discard(session)
            await session.close()

        self._retired.add(session)
        task = asyncio.ensure_future(close_later())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for task in list(self._closing):
            task.cancel()
        sessions = [session for _, session, _ in self._sessions.values()] + list(self._retired)
        self._sessions.clear()
        self._retired.clear()
        for session in sessions:
            await session.close()


class Upstream:
    """Sends adapter-built requests and hands replies back to the adapter to classify."""

    def __init__(self, sessions: SupplierSessions) -> None:
        self._sessions = sessions

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
                    message=f"unreadable reply ({type(exc).__name__})",
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

    async def balance(self, supplier: Supplier, timestamp: float) -> tuple[BalanceReply, Exchange]:
        """Ask for the supplier's prepaid balance; whatever goes wrong leaves it unknown, never raises."""
        request = supplier.adapter.build_balance(timestamp)
        exchange = await self._exchange(supplier, request, "balance")
        if exchange.reply is None:
            return BalanceReply(balance_cents=None, message=exchange.error), exchange
        try:
            return supplier.adapter.parse_balance(exchange.reply), exchange
        except Exception as exc:  # an adapter bug must not stop the watch
            log.exception("supplier_reply_unparsed", supplier=supplier.name, operation="balance")
            return BalanceReply(
                balance_cents=None, message=f"unreadable reply ({type(exc).__name__})"
            ), exchange

    async def _exchange(self, supplier: Supplier, request: HttpRequest, operation: str) -> Exchange:
        metrics = supplier.metrics
        started = time.perf_counter()
        wire = Wire()
        try:
            reply = await self._send(supplier, request, wire)
        except (TimeoutError, ReplyTooLarge, aiohttp.ClientError, OSError) as exc:
            seconds = time.perf_counter() - started
            # The wire has the last word: a byte written means the supplier may have it.
            sent = wire.written or not isinstance(exc, NEVER_SENT)
            error = _describe(exc, supplier.config.timeout, sent=sent)
            log.warning(
                "supplier_request_failed",
                supplier=supplier.name,
                operation=operation,
                url=_without_query(request.url),
                sent=sent,
                error=error,
            )
            return Exchange(None, sent, error, seconds)
        finally:
            # Balance calls have no series of their own (CONTRACT.md §5 names submit and query).
            if (histogram := metrics.duration.get(operation)) is not None:
                histogram.observe(time.perf_counter() - started)
        return Exchange(reply, True, None, time.perf_counter() - started)

    async def _send(self, supplier: Supplier, request: HttpRequest, wire: Wire) -> HttpReply:
        async with (
            asyncio.timeout(supplier.config.timeout),
            self._sessions.of(supplier).request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body or None,
                timeout=supplier.timeout,
                allow_redirects=False,
                trace_request_ctx=wire,
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


def _describe(exc: BaseException, timeout_seconds: float, *, sent: bool) -> str:
    """What went wrong, for logs and operators: the exception's type and OS reason, never its text.

    aiohttp's messages quote the request URL, whose query string carries juhe's `key` and `sign`
    and ofpay's `userpws`.
    """
    if isinstance(exc, ReplyTooLarge):
        return f"reply over {MAX_REPLY_BYTES} bytes"
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
        return f"no reply within {timeout_seconds:g}s"
    reason = type(exc).__name__
    cause = exc.__cause__ if isinstance(exc, ConnectionLost) else None
    if cause is not None:
        reason = type(cause).__name__
    strerror = getattr(cause or exc, "strerror", None)
    if isinstance(strerror, str) and strerror:
        reason = f"{reason} ({strerror})"
    if isinstance(exc, aiohttp.ClientResponseError):
        reason = f"{reason} (HTTP {exc.status})"
    return f"{'after sending' if sent else 'not sent'}: {reason}"


def _without_query(url: str) -> str:
    """The URL as logs may show it: scheme, host, port and path; the query may hold credentials."""
    try:
        return str(URL(url).with_query(None).with_fragment(None).with_user(None))
    except ValueError:
        return "<invalid url>"


async def _mark_written(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    # aiohttp calls this just before it buffers the request line and headers for the socket, so
    # "not written" is only ever said of a request no byte of which can have left.
    wire = context.trace_request_ctx
    if isinstance(wire, Wire):
        wire.written = True


async def _no_resend(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Turn the errors aiohttp answers with a silent second send into final ones.

    aiohttp (3.12 to 3.14 at least) re-sends a GET, HEAD, PUT or DELETE once when a reused
    connection fails with `ClientOSError` or `ServerDisconnectedError`, and re-raises any other
    `ClientError` at once. juhe and ofpay submit by GET: a supplier that charged and then dropped
    the connection would be charged again. A connect failure is no such case and keeps its type.
    """
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
        raise ConnectionLost(type(exc).__name__) from exc


def new_session(limit: int) -> aiohttp.ClientSession:
    """A client session for one supplier, at most `limit` connections: it never re-sends a request."""
    connector = aiohttp.TCPConnector(
        limit=limit, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_mark_written)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        # Our User-Agent instead of aiohttp's (which it adds only when none is given). Not through
        # skip_auto_headers: that builds a header dict per request.
        headers={"User-Agent": "supplier-gateway/0.1"},
        middlewares=(_no_resend,),
        trace_configs=[trace],
    )
