"""Order events: what one is, a subscriber's queue, and the hub that hands a feed's events to this process.

The hub (`EventHub`) owns subscriptions, the slow-reader bound, resets and waiting for an order's final
event; a feed owns event ids and the history clients resume from: in this process (`LocalFeed`, behind
`EventBus`) or in Redis Streams shared by every instance (`redisevents.RedisFeed`). Nothing here knows
HTTP (`stream.py`), and nothing here blocks the order path: a subscriber that falls behind is dropped.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

import orjson

from gateway.clock import Clock
from gateway.errors import StoreUnavailable, TooManyStreams
from gateway.logs import get_logger
from gateway.order import Order, OrderStatus
from gateway.views import public_view

log = get_logger(__name__)
DEFAULT_CAPACITY: Final = 1000  # events kept per shop for resuming
DEFAULT_MAX_PENDING: Final = 500  # live events a subscriber may fall behind by before it is dropped
DEFAULT_HEARTBEAT_SECONDS: Final = 15.0
_EVENT_ID: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")

EventKey = tuple[int, int]
"""An event id as numbers, `<a>-<b>` → (a, b): ids of one shop sort in the order of their events."""

ZERO: Final[EventKey] = (0, 0)  # before every event: the place of a shop that has had none


def parse_event_id(text: str) -> EventKey | None:
    """The key of an event id, None if `text` is not one (`<digits>-<digits>`)."""
    match = _EVENT_ID.fullmatch(text)
    return None if match is None else (int(match[1]), int(match[2]))


def format_event_id(key: EventKey) -> str:
    return f"{key[0]}-{key[1]}"


class ResetReason(StrEnum):
    """Why a stream cannot continue from where the client was: it must re-read the orders it follows."""

    GATEWAY_RESTARTED = "gateway_restarted"  # the id is from another process's bus
    EVENTS_EXPIRED = "events_expired"  # events after the id were evicted from the shop's history
    UNKNOWN_EVENT_ID = "unknown_event_id"  # malformed, or not issued by this bus
    TOO_SLOW = "too_slow"  # the subscriber fell too far behind and is being closed
    EVENTS_LOST = "events_lost"  # events could not be recorded or read (the event store failed)


class OrderEvent:
    """One change of one order's public view.

    Made in this process from the order itself, the JSON is built at most once, when first needed:
    most changes are never streamed, and every subscriber of an event shares the one serialisation.
    Read back from a shared feed, it carries the JSON as stored and no `order`.
    """

    __slots__ = ("_data", "id", "key", "order", "order_id", "shop", "status", "uid")

    def __init__(
        self,
        event_id: str,
        key: EventKey,
        *,
        shop: str,
        uid: str,
        order_id: str,
        status: OrderStatus,
        order: Order | None = None,
        data: bytes | None = None,
    ) -> None:
        self.id = event_id
        self.key = key
        self.shop = shop
        self.uid = uid
        self.order_id = order_id
        self.status = status
        self.order = order
        self._data = data

    @classmethod
    def of(cls, key: EventKey, order: Order) -> OrderEvent:
        """The event of `order`'s change, numbered `key`."""
        return cls(
            format_event_id(key),
            key,
            shop=order.shop,
            uid=order.uid,
            order_id=order.request.order_id,
            status=order.status,
            order=order,
        )

    @property
    def final(self) -> bool:
        return self.status.final

    @property
    def data(self) -> bytes:
        """The order JSON of CONTRACT.md §1."""
        if self._data is None:
            assert self.order is not None  # noqa: S101 (an event without its JSON was made from an order)
            self._data = orjson.dumps(public_view(self.order))
        return self._data


@dataclass(frozen=True, slots=True)
class Reset:
    """Events were lost: the client re-reads its orders (GET /v1/orders/{order_id}); `id` is its new place."""

    id: str
    reason: ResetReason


Item = OrderEvent | Reset


class Subscription:
    """One client's view of its shop's events: a replay or a reset first, then live events until it ends.

    A feed opens it (`_open`) with its starting place and what to replay: at once in this process, a
    round trip later on a shared feed. Live events that arrive before then are held, and those the
    replay already covers are dropped when it opens.
    """

    __slots__ = (
        "_after",
        "_ended",
        "_failure",
        "_held",
        "_hub",
        "_items",
        "_live",
        "_max_pending",
        "_opened",
        "_wake",
        "shop",
        "start_id",
    )

    def __init__(self, hub: EventHub, shop: str, max_pending: int) -> None:
        self._hub = hub
        self.shop = shop
        self.start_id = ""  # the position the stream begins at, for a client that had none; set on opening
        self._items: deque[Item] = deque()
        self._held: list[tuple[EventKey, Item]] | None = []  # live items until opened; None once open
        self._after: EventKey | None = None  # live items up to this key are the client's already
        self._live = 0  # live events pending: a replay does not count against the bound
        self._max_pending = max_pending
        self._ended = False
        self._failure: StoreUnavailable | None = None
        self._opened = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended

    async def opened(self) -> str:
        """The id the stream starts at, once the feed has placed the subscription.

        Raises `StoreUnavailable` if the feed could not read where to start (nothing was sent yet).
        """
        await self._opened.wait()
        if self._failure is not None:
            raise self._failure
        return self.start_id

    async def next(self, timeout_seconds: float | None = None) -> Sequence[Item] | None:
        """Everything pending; waits up to `timeout_seconds` (default: the hub's heartbeat) for something.

        Returns an empty batch on timeout (time for a heartbeat), None once the subscription has ended
        and everything pending was taken.
        """
        if not self._items and not self._ended:
            self._wake.clear()
            wait = self._hub.heartbeat_seconds if timeout_seconds is None else timeout_seconds
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                return ()
        if self._items:
            items = tuple(self._items)
            self._items.clear()
            self._live = 0
            return items
        return None

    def close(self) -> None:
        """The client went away: stop receiving. Idempotent."""
        self._end()
        self._hub._unsubscribe(self)

    # -- for feeds and the hub -----------------------------------------------------------------

    def _open(self, start_id: str, replay: Sequence[Item], after: EventKey | None) -> None:
        """Start at `start_id` with `replay`, then the held live items after `after` (all, if None)."""
        if self._ended or self._held is None:
            self._opened.set()
            return
        self.start_id = start_id
        self._after = after
        held, self._held = self._held, None
        for item in replay:
            self._put(item)
        self._live = 0
        for key, item in held:
            if after is None or key > after:
                self._live += 1
                self._put(item)
        self._opened.set()

    def _fail(self, failure: StoreUnavailable) -> None:
        """The feed could not open the subscription: `opened` raises `failure`, and it ends."""
        if self._held is not None:
            self._failure = failure
        self._end()
        self._hub._unsubscribe(self)

    def _offer(self, key: EventKey, item: Item) -> bool:
        """Queue a live item; False (and ended, with a reset queued) if that would exceed the bound."""
        if self._after is not None and key <= self._after:
            return True  # the replay this subscription opened with had it
        if self._live >= self._max_pending:
            # What is pending is useless to a client that must re-read anyway: free it now.
            self._items.clear()
            self._held = None
            self._put(Reset(item.id, ResetReason.TOO_SLOW))
            self._end()
            return False
        self._live += 1
        if self._held is not None:
            self._held.append((key, item))
        else:
            self._put(item)
        return True

    def _put(self, item: Item) -> None:
        self._items.append(item)
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._opened.set()  # nothing will open it now: whoever waits for that goes on to the end
        self._wake.set()


class EventFeed(Protocol):
    """Where a hub's events come from and are kept: it numbers them, keeps what clients resume from,
    and hands each event to the hub (`EventHub.deliver`) in the order of its shop's ids."""

    def connect(self, hub: EventHub) -> None:
        """Deliver to `hub`: called once, by the hub's constructor."""
        ...

    def publish(self, order: Order) -> None:
        """Make `order`'s change an event: synchronous, bounded work (the hub logs what it raises)."""
        ...

    def open(self, subscription: Subscription, last_event_id: str | None) -> None:
        """Place a new, registered subscription: `Subscription._open` now or later, or `_fail`."""
        ...

    def follow(self, shop: str) -> None:
        """Someone in this process waits for `shop`'s events (`EventHub.wait_final`): deliver them."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Waiter:
    """Requests waiting for one order's final event."""

    __slots__ = ("count", "finished")

    def __init__(self) -> None:
        self.count = 0
        self.finished = asyncio.Event()


class EventHub:
    """This process's subscribers and waiters, per shop, fed by one `EventFeed`.

    Transports (SSE in `stream.py`, later WebSocket) subscribe here; the order path calls
    `order_changed`; the feed calls `deliver` and `reset`.
    """

    def __init__(
        self,
        feed: EventFeed,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be positive")
        self.heartbeat_seconds = heartbeat_seconds
        self._feed = feed
        self._max_pending = max_pending
        self._subscribers: dict[str, set[Subscription]] = {}
        self._waiters: dict[str, _Waiter] = {}  # by order uid
        self._waiting: dict[str, int] = {}  # waiters per shop
        self._closed = False
        feed.connect(self)

    async def start(self) -> None:
        """Start the feed's background work, if it has any."""
        await self._feed.start()

    async def stop(self) -> None:
        """Stop the feed's background work, handing on what it still holds if it can."""
        await self._feed.stop()

    # -- the order path --------------------------------------------------------------------

    def order_changed(self, before: Order | None, after: Order) -> None:
        """`OrderService` listener: publish when what the shop sees changed.

        Saves that only move the notification outbox or the version are not events. Runs on every
        save, so it compares the few fields the public view derives from before doing anything else,
        and a fault here is logged, never raised into the order's processing.
        """
        if (
            before is not None
            and before.status is after.status
            and before.reason is after.reason
            and before.message == after.message
            and before.attempts == after.attempts
        ):
            return
        if after.status.final:
            # Waiters here hear of a change saved here at once, whatever the feed's delay.
            self._finished(after.uid)
        try:
            self._feed.publish(after)
        except Exception:
            log.exception("order_event_failed", order_uid=after.uid, shop=after.shop)

    async def wait_final(self, order: Order, timeout_seconds: float) -> bool:
        """Wait until an event with a final status arrives for `order` (its `shop` and `uid`).

        True at once if `order` is final already; True when such an event arrives (a change saved
        by this process, or by another instance on a shared feed), False after `timeout_seconds`
        without one. Registers before its first await: an event delivered before the call is not
        seen, so a caller holding an older copy reads the store after the wait either way.
        """
        if order.status.final:
            return True
        if timeout_seconds <= 0:
            return False
        waiter = self._waiters.get(order.uid)
        if waiter is None:
            waiter = self._waiters[order.uid] = _Waiter()
        waiter.count += 1
        self._waiting[order.shop] = self._waiting.get(order.shop, 0) + 1
        try:
            self._feed.follow(order.shop)
            async with asyncio.timeout(timeout_seconds):
                await waiter.finished.wait()
            return True
        except TimeoutError:
            return False
        finally:
            # The last request to stop waiting takes the entry away, finished or not: no leak.
            waiter.count -= 1
            if waiter.count == 0 and self._waiters.get(order.uid) is waiter:
                del self._waiters[order.uid]
            left = self._waiting[order.shop] - 1
            if left:
                self._waiting[order.shop] = left
            else:
                del self._waiting[order.shop]

    # -- transports ------------------------------------------------------------------------

    def subscribe(
        self, shop: str, last_event_id: str | None = None, *, max_streams: int | None = None
    ) -> Subscription:
        """A subscription to `shop`'s events after `last_event_id`: replayed if still known, else a reset.

        Without `last_event_id` it starts at the shop's current position. The subscription is
        registered before the feed places it, so no event falls between its replay and its live
        events, or arrives twice; `Subscription.opened` says when it is placed. Raises
        `TooManyStreams` if `shop` already holds `max_streams` subscriptions (checked and taken
        together, so concurrent subscribers cannot overshoot it).
        """
        sub = Subscription(self, shop, self._max_pending)
        if self._closed:
            sub._end()
            return sub
        subscribers = self._subscribers.get(shop)
        if subscribers is None:
            # Made only when taken: an empty set would make the shop look followed (`interested`).
            subscribers = set()
        elif max_streams is not None and len(subscribers) >= max_streams:
            raise TooManyStreams(
                f"this shop already has {len(subscribers)} open streams, its limit; close one first"
            )
        subscribers.add(sub)
        self._subscribers[shop] = subscribers
        try:
            self._feed.open(sub, last_event_id)
        except BaseException:
            self._unsubscribe(sub)
            raise
        return sub

    def subscribers(self, shop: str) -> int:
        subscribers = self._subscribers.get(shop)
        return len(subscribers) if subscribers is not None else 0

    def close(self) -> None:
        """End every subscription (the gateway is stopping); later subscriptions end at once."""
        self._closed = True
        for subscribers in self._subscribers.values():
            for sub in subscribers:
                sub._end()
        self._subscribers.clear()

    def _unsubscribe(self, sub: Subscription) -> None:
        subscribers = self._subscribers.get(sub.shop)
        if subscribers is not None:
            subscribers.discard(sub)
            if not subscribers:
                del self._subscribers[sub.shop]

    # -- feeds -----------------------------------------------------------------------------

    def interested(self, shop: str) -> bool:
        """Whether anyone in this process follows `shop`'s events: a feed may skip the shops no one does."""
        return shop in self._subscribers or shop in self._waiting

    def deliver(self, event: OrderEvent) -> None:
        """Hand `event` to its shop's subscribers and to the requests waiting for its order."""
        if event.shop in self._subscribers:
            self._offer(event.shop, event.key, event)
        if event.final:
            self._finished(event.uid)

    def reset(self, shop: str, key: EventKey, reason: ResetReason) -> None:
        """Events of `shop` up to `key` may be lost: its subscribers re-read, then go on after `key`."""
        subscribers = self._subscribers.get(shop)
        if subscribers:
            log.warning("order_stream_reset", shop=shop, reason=reason.value, subscribers=len(subscribers))
            self._offer(shop, key, Reset(format_event_id(key), reason))

    def _offer(self, shop: str, key: EventKey, item: Item) -> None:
        subscribers = self._subscribers[shop]
        dropped = [sub for sub in subscribers if not sub._offer(key, item)]
        for sub in dropped:
            subscribers.discard(sub)
            log.warning("order_stream_dropped", shop=shop, reason=ResetReason.TOO_SLOW.value)
        if not subscribers:
            del self._subscribers[shop]

    def _finished(self, uid: str) -> None:
        waiter = self._waiters.get(uid)
        if waiter is not None:
            waiter.finished.set()


class _History:
    """One shop's recent events in this process."""

    __slots__ = ("evicted_upto", "history")

    def __init__(self, capacity: int) -> None:
        self.history: deque[OrderEvent] = deque(maxlen=capacity)
        self.evicted_upto = 0  # highest seq dropped from `history`: ids below it cannot be resumed


class LocalFeed:
    """Events of this process only: ids `<epoch>-<seq>`, the epoch telling restarts apart, and a
    bounded history per shop. For a single instance (memory and SQLite stores)."""

    def __init__(self, clock: Clock, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.epoch = int(clock.now() * 1000)
        self._capacity = capacity
        self._seq = 0
        self.histories: dict[str, _History] = {}
        self._hub: EventHub | None = None

    @property
    def position(self) -> str:
        """The id of the latest event (of any shop): resuming from it replays nothing."""
        return format_event_id((self.epoch, self._seq))

    def connect(self, hub: EventHub) -> None:
        self._hub = hub

    def publish(self, order: Order) -> None:
        self.record(order)

    def record(self, order: Order) -> OrderEvent:
        """Record `order` as the shop's next event and hand it to the hub."""
        self._seq += 1
        event = OrderEvent.of((self.epoch, self._seq), order)
        history = self.histories.get(order.shop)
        if history is None:
            history = self.histories[order.shop] = _History(self._capacity)
        if len(history.history) == history.history.maxlen:
            history.evicted_upto = history.history[0].key[1]
        history.history.append(event)
        if self._hub is not None:
            self._hub.deliver(event)
        return event

    def open(self, subscription: Subscription, last_event_id: str | None) -> None:
        """Replay and start at once: with no await between, no event can fall in between."""
        if not last_event_id:
            subscription._open(self.position, (), None)
            return
        replay: list[Item] = []
        reason = self._replay(subscription.shop, last_event_id, replay)
        if reason is None:
            subscription._open(last_event_id, replay, None)
        else:
            subscription._open(self.position, (Reset(self.position, reason),), None)

    def _replay(self, shop: str, last_event_id: str, replay: list[Item]) -> ResetReason | None:
        """Append the shop's events after `last_event_id` to `replay`; the reason it cannot, if so."""
        key = parse_event_id(last_event_id)
        if key is None:
            return ResetReason.UNKNOWN_EVENT_ID
        epoch, seq = key
        if epoch != self.epoch:
            return ResetReason.GATEWAY_RESTARTED
        if seq > self._seq:
            return ResetReason.UNKNOWN_EVENT_ID
        history = self.histories.get(shop)
        if history is None:
            return None
        if seq < history.evicted_upto:
            return ResetReason.EVENTS_EXPIRED
        missed: list[OrderEvent] = []
        for event in reversed(history.history):
            if event.key[1] <= seq:
                break
            missed.append(event)
        replay.extend(reversed(missed))
        return None

    def follow(self, shop: str) -> None:
        """Every event of this process reaches the hub already."""

    async def start(self) -> None:
        """Nothing runs in the background."""

    async def stop(self) -> None:
        """Nothing is held to hand on."""


class EventBus(EventHub):
    """The hub fed in this process (`LocalFeed`): what a single gateway streams."""

    def __init__(
        self,
        clock: Clock,
        *,
        capacity: int = DEFAULT_CAPACITY,
        max_pending: int = DEFAULT_MAX_PENDING,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    ) -> None:
        if capacity < 1 or max_pending < 1:
            raise ValueError("capacity and max_pending must be positive")
        self.local = LocalFeed(clock, capacity)
        super().__init__(self.local, max_pending=max_pending, heartbeat_seconds=heartbeat_seconds)

    @property
    def epoch(self) -> int:
        return self.local.epoch

    @property
    def position(self) -> str:
        """The id of the latest event (of any shop): resuming from it replays nothing."""
        return self.local.position

    @property
    def _channels(self) -> Mapping[str, _History]:
        return self.local.histories

    def publish(self, order: Order) -> OrderEvent:
        """Record `order` as the shop's next event and hand it to the shop's subscribers."""
        return self.local.record(order)
