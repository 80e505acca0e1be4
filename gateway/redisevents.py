"""Order events in Redis Streams, shared by every gateway instance on one Redis store (CONTRACT.md §6).

Owns the keys `{gw:ev:<shop>}` (a shop's events) and `gw:ev:bell` (which shops just had some), the
background publisher and the one reader of this process; handing events to subscribers is the hub's
(`events.EventHub`). Never blocks the order path, never raises a Redis failure into an order or the app:
failures are logged and retried with backoff.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, Final

import orjson
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from gateway.clock import Clock
from gateway.errors import StoreUnavailable
from gateway.events import (
    DEFAULT_CAPACITY,
    ZERO,
    EventHub,
    EventKey,
    OrderEvent,
    Reset,
    ResetReason,
    Subscription,
    format_event_id,
    parse_event_id,
)
from gateway.logs import get_logger
from gateway.order import Order, OrderStatus
from gateway.store.redis_endpoint import Client
from gateway.views import public_view

log = get_logger(__name__)

BELL_KEY: Final = b"gw:ev:bell"
# The bell only has to outlast the pause between two reads of the slowest reader; one that fell
# further behind finds the events at its next sweep.
BELL_CAPACITY: Final = 1000
# How long a read of the bell waits for a ring. Capped at half the client's reply timeout, so a quiet
# bell is never taken for a dead connection.
BLOCK_SECONDS: Final = 1.0
# How often every followed shop is read whether its bell rang or not: the bound on how late an event
# arrives whose bell was lost (its instance died between appending it and ringing).
SWEEP_SECONDS: Final = 5.0
PAGE: Final = 500  # entries per XRANGE
BATCH: Final = 500  # events appended per pipeline
QUEUE_LIMIT: Final = 10_000  # events waiting for Redis before new ones are dropped (and a gap marked)
OPEN_TIMEOUT_SECONDS: Final = 5.0  # how long a new stream waits to be placed before it is refused (503)
FLUSH_SECONDS: Final = 2.0  # how long stopping waits for the publisher to hand on what it holds
BACKOFF_SECONDS: Final = (0.05, 2.0)  # first and longest pause after a failure, before jitter
CANCEL_AGAIN_SECONDS: Final = 0.1  # see `_cancelled`
PERMITS: Final = 4  # commands in flight, when not given the store's budget to share

# The fields of an entry: an order's change, or a gap (events were dropped before they reached Redis).
UID: Final = b"u"
ORDER_ID: Final = b"o"
STATUS: Final = b"s"
DATA: Final = b"d"
GAP: Final = b"g"

_REDIS_ERRORS: Final = (RedisError, RedisClusterException, OSError)
_Entry = tuple[bytes, Mapping[bytes, bytes]]


def stream_key(shop: str) -> bytes:
    """The shop's stream: its name is its own hash tag, so every command on it names one Cluster slot."""
    return b"{gw:ev:" + shop.encode() + b"}"


class RedisFeed:
    """The `EventFeed` of instances sharing a Redis store (one server or a Cluster).

    Every order change becomes an entry of its shop's stream (XADD MAXLEN ~ `capacity`, so a little
    more than `capacity` are kept); the entry's stream id is the event id clients see, so an id given
    out by one instance resumes on any other. Resuming from an id older than the stream keeps is
    `events_expired`; a malformed id, or one the stream never issued, `unknown_event_id`.

    Publishing: `publish` (called on the order path, after the order is saved) only queues the order;
    a background publisher serialises the public views and appends them in pipelines, then rings the
    bell with the last id of each shop. If Redis fails it retries with backoff, in order; if the queue
    fills meanwhile, new events are dropped and their shops get a gap entry once Redis answers, which
    readers turn into an `events_lost` reset. What is lost if the instance dies between an order's save
    and its XADD: those events, silently for clients following the order elsewhere; they see its later
    events, and its final state in GET /v1/orders/{order_id}. A reply lost after an append succeeded
    appends it again: a client may see one change twice, never a change out of order.

    Reading: one task blocks on the bell (XREAD BLOCK: one key, one connection, on a server or a
    Cluster alike) and reads the streams of the shops it rang for, from its own place in each, for the
    shops someone in this process follows; every `SWEEP_SECONDS` it reads them all anyway. Each read
    starts at the last entry already read: if that entry is gone (trimmed while the reader could not
    read, or lost with Redis's data), the shop's subscribers get a reset (`events_expired` or
    `events_lost`) and go on from the stream's end. After a failure it reads every followed shop from
    where it stopped, so a short outage delays events and a long one resets.
    """

    def __init__(
        self,
        client: Client,
        *,
        clock: Clock,
        rng: random.Random,
        permits: asyncio.Semaphore | None = None,
        capacity: int = DEFAULT_CAPACITY,
        block_seconds: float = BLOCK_SECONDS,
        sweep_seconds: float = SWEEP_SECONDS,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        if capacity < 1 or queue_limit < 1:
            raise ValueError("capacity and queue_limit must be positive")
        self._client = client
        self._clock = clock
        self._rng = rng
        # A client shared with the store shares its connection budget too (see `RedisStore.permits`).
        self._permits = permits if permits is not None else asyncio.Semaphore(PERMITS)
        self._capacity = capacity
        reply_timeout = _reply_timeout(client)
        self._block_ms = max(1, int(1000 * min(block_seconds, reply_timeout / 2 if reply_timeout else 1e9)))
        self._sweep_seconds = sweep_seconds
        self._queue_limit = queue_limit
        self._hub: EventHub | None = None
        # Publishing.
        self._queue: deque[Order] = deque()
        self._gaps: set[str] = set()  # shops whose events were dropped: a gap entry goes first
        self._wake = asyncio.Event()
        self._stopping = False
        # Reading: the last entry read of each followed shop, and of the bell.
        self._cursors: dict[str, EventKey] = {}
        self._placing: dict[str, asyncio.Future[EventKey]] = {}  # first cursors being read
        self._fetch_soon: set[str] = set()  # shops to read at the next turn, whatever the bell said
        self._bell = ZERO
        self._next_sweep = 0.0
        self._ready = asyncio.Event()  # the reader has its place in the bell and reads
        self._tasks: set[asyncio.Task[Any]] = set()
        self._publisher: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    # -- EventFeed -------------------------------------------------------------------------

    def connect(self, hub: EventHub) -> None:
        self._hub = hub

    async def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_forever(), name="order-events-publisher")
        self._reader = asyncio.create_task(self._read_forever(), name="order-events-reader")

    async def stop(self) -> None:
        """Hand on what the publisher holds (for up to `FLUSH_SECONDS`), then stop reading."""
        self._stopping = True
        self._wake.set()
        if self._publisher is not None:
            try:
                async with asyncio.timeout(FLUSH_SECONDS):
                    await asyncio.shield(self._publisher)
            except TimeoutError:
                log.warning("order_events_lost", events=len(self._queue), shops=len(self._gaps))
            except Exception:
                log.exception("order_events_publisher_failed")
        tasks = [t for t in (self._publisher, self._reader, *self._tasks, *self._placing.values()) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            await _cancelled(task)

    def publish(self, order: Order) -> None:
        """Queue `order`'s change for the publisher: constant work, nothing serialised here."""
        if len(self._queue) >= self._queue_limit:
            if order.shop not in self._gaps:
                log.warning("order_events_dropped", shop=order.shop, queued=len(self._queue))
            self._gaps.add(order.shop)
            return
        self._queue.append(order)
        self._wake.set()

    def open(self, subscription: Subscription, last_event_id: str | None) -> None:
        cursor = self._cursors.get(subscription.shop)
        if not last_event_id and cursor is not None:
            # Live from the reader's place: every event it delivers from now on comes after it.
            subscription._open(format_event_id(cursor), (), cursor)
            return
        self._spawn(self._open(subscription, last_event_id))

    def follow(self, shop: str) -> None:
        if shop not in self._cursors and shop not in self._placing:
            self._spawn(self._follow(shop))

    # -- placing subscriptions -------------------------------------------------------------

    async def _open(self, sub: Subscription, last_event_id: str | None) -> None:
        """Place `sub`: at the reader's place in its shop, after replaying from `last_event_id`."""
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                placed = await self._cursor(sub.shop)
                # Read again, with no await before `sub` holds on to it: the reader may have gone on
                # meanwhile; what it delivered up to here is held by `sub`, and dropped as covered.
                cursor = self._cursors.get(sub.shop, placed)
                after = parse_event_id(last_event_id) if last_event_id else None
                replay = await self._history(sub.shop, after, cursor) if after is not None else []
        except (TimeoutError, *_REDIS_ERRORS) as exc:
            log.warning("order_stream_open_failed", shop=sub.shop, error=_describe(exc))
            sub._fail(StoreUnavailable("order events cannot be read now; connect again later"))
            return
        start = format_event_id(cursor)
        if not last_event_id:
            sub._open(start, (), cursor)
        elif after is None:
            sub._open(start, (Reset(start, ResetReason.UNKNOWN_EVENT_ID),), cursor)
        elif isinstance(replay, ResetReason):
            sub._open(start, (Reset(start, replay),), cursor)
        else:
            # A client ahead of this reader (it read another instance) skips what it has already.
            sub._open(format_event_id(after), replay, max(after, cursor))

    async def _follow(self, shop: str) -> None:
        try:
            await self._cursor(shop)
        except _REDIS_ERRORS as exc:
            # Only changes saved by other instances go unseen; this one's reach waiters directly.
            log.warning("order_events_follow_failed", shop=shop, error=_describe(exc))

    async def _cursor(self, shop: str) -> EventKey:
        """The reader's place in `shop`'s stream, taking the stream's end as its place if it had none."""
        cursor = self._cursors.get(shop)
        if cursor is not None:
            return cursor
        placing = self._placing.get(shop)
        if placing is None:
            placing = self._placing[shop] = asyncio.ensure_future(self._place(shop))
            placing.add_done_callback(self._placed)
        # Shielded: one caller giving up does not take the place away from the others.
        return await asyncio.shield(placing)

    def _placed(self, placing: asyncio.Future[EventKey]) -> None:
        for shop, pending in list(self._placing.items()):
            if pending is placing:
                del self._placing[shop]
        if not placing.cancelled():
            placing.exception()  # retrieved: its callers (if any still wait) have it and log it

    async def _place(self, shop: str) -> EventKey:
        # After the reader took its place in the bell: whatever is appended after the end read here
        # rings after that place, so the reader reads it.
        await self._ready.wait()
        async with self._permits:
            last = _entries(await self._client.xrevrange(stream_key(shop), "+", "-", count=1))
        cursor = self._cursors.setdefault(shop, _key(last[0][0]) if last else ZERO)
        # An event appended between that read and now rang while the shop had no place: read it soon.
        self._fetch_soon.add(shop)
        return cursor

    async def _history(
        self, shop: str, after: EventKey, upto: EventKey
    ) -> list[OrderEvent | Reset] | ResetReason:
        """The shop's entries after `after` up to `upto`, or why they cannot all be given.

        Every page is read from the last entry already had (first `after` itself): finding it again
        proves nothing after it was trimmed. Before everything (`ZERO`), the stream's own count of
        what it ever added says so instead.
        """
        key = stream_key(shop)
        entries: list[_Entry] = []
        place = after
        while True:
            reads = self._client.pipeline(transaction=False)
            reads.xrange(key, "-" if place == ZERO else format_event_id(place), "+", count=PAGE + 1)
            reads.xinfo_stream(key)
            async with self._permits:
                reply, stream = await reads.execute(raise_on_error=False)
            page = _entries(_checked(reply))
            info = _checked(stream)
            if place == ZERO:
                if _trimmed(info):
                    return ResetReason.EVENTS_EXPIRED
            elif not page or _key(page[0][0]) != place:
                # `after` itself: trimmed, or never issued; an entry read a page ago: trimmed since.
                return _gone(place, info, ResetReason.UNKNOWN_EVENT_ID if place == after else None)
            else:
                page = page[1:]
            entries.extend(entry for entry in page if _key(entry[0]) <= upto)
            if not page or len(page) < PAGE or _key(page[-1][0]) >= upto:
                break
            place = _key(page[-1][0])
        return [item for item in (self._item(shop, entry) for entry in entries) if item is not None]

    # -- publishing ------------------------------------------------------------------------

    async def _publish_forever(self) -> None:
        failures = 0
        while True:
            if not self._queue and not self._gaps:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(islice(self._queue, BATCH))
            gaps = tuple(self._gaps)
            try:
                last_ids, unshown = await self._append(gaps, batch)
            except _REDIS_ERRORS as exc:
                error = _describe(exc)
            except Exception:
                log.exception("order_events_publisher_failed")
                error = "unexpected"
            else:
                if failures:
                    log.info("order_events_append_recovered", failures=failures)
                    failures = 0
                for _ in batch:
                    self._queue.popleft()
                self._gaps.difference_update(gaps)
                self._gaps.update(unshown)
                await self._ring(last_ids)
                continue
            failures += 1
            pause = self._backoff(failures)
            log.warning("order_events_append_failed", error=error, queued=len(self._queue), retry_in=pause)
            await asyncio.sleep(pause)

    async def _append(self, gaps: Iterable[str], batch: Sequence[Order]) -> tuple[dict[str, bytes], set[str]]:
        """Append gap entries, then the batch's events, in one pipeline.

        Returns each shop's last id, and the shops of orders that could not be shown (they need a gap).
        """
        appends = self._client.pipeline(transaction=False)
        shops: list[str] = []
        unshown: set[str] = set()
        for shop in gaps:
            gap: dict[FieldT, EncodableT] = {GAP: b"1"}
            appends.xadd(stream_key(shop), gap, maxlen=self._capacity, approximate=True)
            shops.append(shop)
        for order in batch:
            try:
                fields = _fields(order)
            except Exception:
                # An order the view cannot show must not stop every later event: its shop resets.
                log.exception("order_event_failed", order_uid=order.uid, shop=order.shop)
                unshown.add(order.shop)
                continue
            appends.xadd(stream_key(order.shop), fields, maxlen=self._capacity, approximate=True)
            shops.append(order.shop)
        if not shops:
            return {}, unshown
        async with self._permits:
            ids: list[bytes] = await appends.execute()
        return dict(zip(shops, ids, strict=True)), unshown

    async def _ring(self, last_ids: Mapping[str, bytes]) -> None:
        """Tell every reader which shops have new events (after they are there to read)."""
        if not last_ids:
            return
        fields: dict[FieldT, EncodableT] = {shop.encode(): entry_id for shop, entry_id in last_ids.items()}
        try:
            async with self._permits:
                await self._client.xadd(BELL_KEY, fields, maxlen=BELL_CAPACITY, approximate=True)
        except _REDIS_ERRORS as exc:
            log.warning("order_events_ring_failed", error=_describe(exc), sweep_seconds=self._sweep_seconds)

    # -- reading ---------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            try:
                if not self._ready.is_set():
                    await self._resume()
                    self._ready.set()
                    if failures:
                        log.info("order_events_read_recovered", failures=failures)
                        failures = 0
                await self._read()
                continue
            except _REDIS_ERRORS as exc:
                error = _describe(exc)
            except Exception:
                log.exception("order_events_reader_failed")
                error = "unexpected"
            self._ready.clear()
            failures += 1
            pause = self._backoff(failures)
            log.warning("order_events_read_failed", error=error, retry_in=pause)
            await asyncio.sleep(pause)

    async def _resume(self) -> None:
        """Take a place in the bell, then read every followed shop from where it was left."""
        async with self._permits:
            last = _entries(await self._client.xrevrange(BELL_KEY, "+", "-", count=1))
        self._bell = _key(last[0][0]) if last else ZERO
        await self._fetch(set(self._cursors))
        self._next_sweep = self._clock.monotonic() + self._sweep_seconds

    async def _read(self) -> None:
        """One turn: read what is due, wait for the bell, read the shops it rang for."""
        due = self._fetch_soon & self._cursors.keys()
        self._fetch_soon -= due
        if self._clock.monotonic() >= self._next_sweep:
            due |= self._cursors.keys()
            self._next_sweep = self._clock.monotonic() + self._sweep_seconds
        if due:
            await self._fetch(due)
        async with self._permits:
            rung = await self._client.xread(
                {BELL_KEY: format_event_id(self._bell)}, count=BELL_CAPACITY, block=self._block_ms
            )
        due = set()
        for entry_id, fields in _entries(rung[0][1] if isinstance(rung, list) and rung else []):
            self._bell = _key(entry_id)
            for name, last_id in fields.items():
                shop = name.decode(errors="replace")
                cursor = self._cursors.get(shop)
                if cursor is None:
                    if self._interested(shop):
                        self._fetch_soon.add(shop)  # its place is being read: read it then
                elif _key(last_id) > cursor:
                    due.add(shop)
        if due:
            await self._fetch(due)

    async def _fetch(self, shops: set[str]) -> None:
        """Read the followed `shops` from their places on, delivering what is new; forget the others."""
        for shop in list(shops):
            if not self._interested(shop):
                self._cursors.pop(shop, None)
                shops.discard(shop)
        while shops:
            reads = self._client.pipeline(transaction=False)
            asked = [(shop, self._cursors[shop]) for shop in shops if shop in self._cursors]
            for shop, cursor in asked:
                key = stream_key(shop)
                if cursor == ZERO:
                    # Before everything, there is no entry to find again: the stream says whether
                    # it ever trimmed instead.
                    reads.xrange(key, "-", "+", count=PAGE + 1)
                    reads.xinfo_stream(key)
                else:
                    reads.xrange(key, format_event_id(cursor), "+", count=PAGE + 1)
            async with self._permits:
                replies = iter(await reads.execute(raise_on_error=False))
            shops = set()
            for shop, cursor in asked:
                page = _entries(_checked(next(replies)))
                trimmed = cursor == ZERO and _trimmed(_checked(next(replies)))
                if await self._take(shop, page, trimmed):
                    shops.add(shop)

    async def _take(self, shop: str, page: list[_Entry], trimmed: bool) -> bool:
        """Deliver a page read from the shop's place (that entry first); True if more may follow."""
        cursor = self._cursors[shop]
        if trimmed or (cursor != ZERO and (not page or _key(page[0][0]) != cursor)):
            await self._lost_place(shop, cursor)
            return False
        if cursor != ZERO:
            page = page[1:]
        hub = self._hub
        for entry in page:
            item = self._item(shop, entry)
            key = _key(entry[0])
            self._cursors[shop] = key
            if hub is None:
                continue
            if isinstance(item, OrderEvent):
                hub.deliver(item)
            elif isinstance(item, Reset):
                hub.reset(shop, key, item.reason)
        return len(page) >= PAGE

    async def _lost_place(self, shop: str, cursor: EventKey) -> None:
        """The entry at the shop's place is gone: reset its subscribers and go on from the stream's end."""
        async with self._permits:
            info = _checked(await self._client.xinfo_stream(stream_key(shop)))
        end = _info_id(info, "last-generated-id") if isinstance(info, Mapping) else ZERO
        self._cursors[shop] = end
        if self._hub is not None:
            # Not trimmed: the stream is not the one the place was read from (Redis lost its data).
            self._hub.reset(shop, end, _gone(cursor, info, ResetReason.EVENTS_LOST))

    # -- small parts -----------------------------------------------------------------------

    def _item(self, shop: str, entry: _Entry) -> OrderEvent | Reset | None:
        """The event (or gap) an entry holds; None, logged, for an entry this version cannot read."""
        entry_id, fields = entry
        event_id = entry_id.decode()
        if GAP in fields:
            return Reset(event_id, ResetReason.EVENTS_LOST)
        try:
            return OrderEvent(
                event_id,
                _key(entry_id),
                shop=shop,
                uid=fields[UID].decode(),
                order_id=fields[ORDER_ID].decode(),
                status=OrderStatus(fields[STATUS].decode()),
                data=fields[DATA],
            )
        except (KeyError, ValueError):
            log.warning("order_event_unreadable", shop=shop, event_id=event_id)
            return None

    def _interested(self, shop: str) -> bool:
        return self._hub is not None and self._hub.interested(shop)

    def _backoff(self, failures: int) -> float:
        first, longest = BACKOFF_SECONDS
        return min(longest, first * 2.0 ** min(failures - 1, 16)) * self._rng.uniform(0.5, 1.0)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _cancelled(task: asyncio.Future[Any]) -> None:
    """Wait for a cancelled `task` to end, cancelling it again while it goes on.

    On Python 3.11 a cancellation can be lost inside redis-py: `asyncio.wait_for` (around its socket
    writes) returns a result that completed together with the cancellation, and the task carries on.
    """
    while not task.done():
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_SECONDS)
        task.cancel()
    error = None if task.cancelled() else task.exception()
    if error is not None:
        log.error("order_events_task_failed", error=_describe(error))


def _fields(order: Order) -> dict[FieldT, EncodableT]:
    return {
        UID: order.uid.encode(),
        ORDER_ID: order.request.order_id.encode(),
        STATUS: order.status.value.encode(),
        DATA: orjson.dumps(public_view(order)),
    }


def _key(entry_id: bytes | str) -> EventKey:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    key = parse_event_id(text)
    if key is None:
        raise ResponseError(f"not a stream id: {text!r}")
    return key


def _info_id(info: Mapping[Any, Any], name: str) -> EventKey:
    """An entry id field of XINFO STREAM."""
    value = info.get(name, info.get(name.encode()))
    if not isinstance(value, bytes | str):
        raise ResponseError(f"XINFO STREAM without {name}")
    return _key(value)


def _info_count(info: Mapping[Any, Any], name: str) -> int:
    """A count field of XINFO STREAM."""
    value = info.get(name, info.get(name.encode()))
    if not isinstance(value, int):
        raise ResponseError(f"XINFO STREAM without {name}")
    return value


def _entries(reply: object) -> list[_Entry]:
    """Stream entries as redis-py reads them (RESP2, bytes), checked into `(id, fields)` pairs."""
    if not isinstance(reply, list):
        raise ResponseError(f"not stream entries: {type(reply).__name__}")
    entries: list[_Entry] = []
    for entry in reply:
        entry_id, fields = entry
        if not isinstance(entry_id, bytes) or not isinstance(fields, dict):
            raise ResponseError("not a stream entry")
        entries.append((entry_id, fields))
    return entries


def _checked(reply: object) -> object:
    """A pipeline's reply, or the error it holds raised; a missing stream reads as None."""
    if isinstance(reply, ResponseError) and "no such key" in str(reply):
        return None
    if isinstance(reply, Exception):
        raise reply
    return reply


def _trimmed(info: object) -> bool:
    """Whether XINFO STREAM says the stream ever trimmed an entry (None: there is no stream).

    Nothing here deletes entries one by one (XDEL): every entry added and no longer there was trimmed.
    """
    if not isinstance(info, Mapping):
        return False
    return _info_count(info, "entries-added") > _info_count(info, "length")


def _gone(place: EventKey, info: object, otherwise: ResetReason | None) -> ResetReason:
    """Why the entry at `place` is not in the stream (`info`: its XINFO STREAM, None if there is none).

    Issued by this stream, below the first entry it keeps, in a stream that trimmed: trimmed,
    `events_expired`. Otherwise it was never there, or was lost with Redis's data (a stream made
    again has new ids, but never trimmed): `otherwise` (`events_expired` if None).
    """
    if (
        isinstance(info, Mapping)
        and _trimmed(info)
        and place <= _info_id(info, "last-generated-id")
        and (not _info_count(info, "length") or place < _info_id(info, "recorded-first-entry-id"))
    ):
        return ResetReason.EVENTS_EXPIRED
    return otherwise or ResetReason.EVENTS_EXPIRED


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _reply_timeout(client: Client) -> float | None:
    timeout = client.get_connection_kwargs().get("socket_timeout")
    return float(timeout) if timeout else None
