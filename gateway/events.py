"""The in-process bus of order events: a bounded per-shop history that clients resume from, and subscribers.

It owns event ids, buffering and fan-out; it knows nothing of HTTP (that is `stream.py`) and never blocks
the order path: publishing is synchronous, bounded work, and a subscriber that falls behind is dropped.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import orjson

from gateway.clock import Clock
from gateway.errors import TooManyStreams
from gateway.logs import get_logger
from gateway.order import Order
from gateway.views import public_view

log = get_logger(__name__)
DEFAULT_CAPACITY: Final = 1000  # events kept per shop for resuming
DEFAULT_MAX_PENDING: Final = 500  # live events a subscriber may fall behind by before it is dropped
DEFAULT_HEARTBEAT_SECONDS: Final = 15.0
_EVENT_ID: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


class ResetReason(StrEnum):
    """Why a stream cannot continue from where the client was: it must re-read the orders it follows."""

    GATEWAY_RESTARTED = "gateway_restarted"  # the id is from another process's bus
    EVENTS_EXPIRED = "events_expired"  # events after the id were evicted from the shop's history
    UNKNOWN_EVENT_ID = "unknown_event_id"  # malformed, or not issued by this bus
    TOO_SLOW = "too_slow"  # the subscriber fell too far behind and is being closed


class OrderEvent:
    """One change of one order's public view. The JSON is built at most once, when first needed.

    Most changes are never streamed (no subscriber, never replayed), so serialising eagerly on the
    order path would be wasted; every subscriber of an event shares the one serialisation.
    """

    __slots__ = ("_data", "id", "order", "seq")

    def __init__(self, event_id: str, seq: int, order: Order) -> None:
        self.id = event_id
        self.seq = seq
        self.order = order
        self._data: bytes | None = None

    @property
    def shop(self) -> str:
        return self.order.shop

    @property
    def data(self) -> bytes:
        """The order JSON of CONTRACT.md §1."""
        if self._data is None:
            self._data = orjson.dumps(public_view(self.order))
        return self._data


@dataclass(frozen=True, slots=True)
class Reset:
    """Events were lost: the client re-reads its orders (GET /v1/orders/{order_id}); `id` is its new place."""

    id: str
    reason: ResetReason


Item = OrderEvent | Reset


class Subscription:
    """One client's view of its shop's events: a replay or a reset first, then live events until it ends."""

    __slots__ = ("_bus", "_ended", "_items", "_live", "_max_pending", "_wake", "shop", "start_id")

    def __init__(self, bus: EventBus, shop: str, start_id: str, max_pending: int) -> None:
        self._bus = bus
        self.shop = shop
        self.start_id = start_id  # the position the stream begins at, for a client that had none
        self._items: deque[Item] = deque()
        self._live = 0  # live events pending: a replay does not count against the bound
        self._max_pending = max_pending
        self._ended = False
        self._wake = asyncio.Event()

    @property
    def ended(self) -> bool:
        return self._ended

    async def next(self, timeout_seconds: float | None = None) -> Sequence[Item] | None:
        """Everything pending; waits up to `timeout_seconds` (default: the bus's heartbeat) for something.

        Returns an empty batch on timeout (time for a heartbeat), None once the subscription has ended
        and everything pending was taken.
        """
        if not self._items and not self._ended:
            self._wake.clear()
            wait = self._bus.heartbeat_seconds if timeout_seconds is None else timeout_seconds
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
        self._bus._unsubscribe(self)

    def _put(self, item: Item) -> None:
        self._items.append(item)
        self._wake.set()

    def _offer(self, event: OrderEvent) -> bool:
        """Queue a live event; False (and ended, with a reset queued) if that would exceed the bound."""
        if self._live >= self._max_pending:
            # What is pending is useless to a client that must re-read anyway: free it now.
            self._items.clear()
            self._put(Reset(event.id, ResetReason.TOO_SLOW))
            self._end()
            return False
        self._live += 1
        self._put(event)
        return True

    def _end(self) -> None:
        self._ended = True
        self._wake.set()


class _Channel:
    """One shop's history and subscribers."""

    __slots__ = ("evicted_upto", "history", "subscribers")

    def __init__(self, capacity: int) -> None:
        self.history: deque[OrderEvent] = deque(maxlen=capacity)
        self.evicted_upto = 0  # highest seq dropped from `history`: ids below it cannot be resumed
        self.subscribers: set[Subscription] = set()


class EventBus:
    """Order events of this process, per shop. Ids are `<epoch>-<seq>`: the epoch tells restarts apart."""

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
        self.epoch = int(clock.now() * 1000)
        self.heartbeat_seconds = heartbeat_seconds
        self._capacity = capacity
        self._max_pending = max_pending
        self._seq = 0
        self._channels: dict[str, _Channel] = {}
        self._closed = False

    @property
    def position(self) -> str:
        """The id of the latest event (of any shop): resuming from it replays nothing."""
        return self._event_id(self._seq)

    def _event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def _channel(self, shop: str) -> _Channel:
        channel = self._channels.get(shop)
        if channel is None:
            channel = self._channels[shop] = _Channel(self._capacity)
        return channel

    # -- publishing (the order path) -------------------------------------------------------

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
        try:
            self.publish(after)
        except Exception:
            log.exception("order_event_failed", order_uid=after.uid, shop=after.shop)

    def publish(self, order: Order) -> OrderEvent:
        """Record `order` as the shop's next event and hand it to the shop's subscribers."""
        self._seq += 1
        event = OrderEvent(self._event_id(self._seq), self._seq, order)
        channel = self._channel(order.shop)
        if len(channel.history) == channel.history.maxlen:
            channel.evicted_upto = channel.history[0].seq
        channel.history.append(event)
        if channel.subscribers:
            dropped = [sub for sub in channel.subscribers if not sub._offer(event)]
            for sub in dropped:
                channel.subscribers.discard(sub)
                log.warning("order_stream_dropped", shop=order.shop, reason=ResetReason.TOO_SLOW.value)
        return event

    # -- subscribing -----------------------------------------------------------------------

    def subscribe(
        self, shop: str, last_event_id: str | None = None, *, max_streams: int | None = None
    ) -> Subscription:
        """A subscription to `shop`'s events after `last_event_id`: replayed if still known, else a reset.

        Without `last_event_id` it starts at the current position. Replay and registration happen
        together, with no await between, so no event falls between them or arrives twice. Raises
        `TooManyStreams` if `shop` already holds `max_streams` subscriptions (checked and taken
        together too, so concurrent subscribers cannot overshoot it).
        """
        sub = Subscription(self, shop, self.position, self._max_pending)
        if self._closed:
            sub._end()
            return sub
        channel = self._channel(shop)
        if max_streams is not None and len(channel.subscribers) >= max_streams:
            raise TooManyStreams(
                f"this shop already has {len(channel.subscribers)} open streams, its limit; close one first"
            )
        if last_event_id:
            reason = self._replay(channel, last_event_id, sub)
            if reason is None:
                sub.start_id = last_event_id
            else:
                sub._put(Reset(self.position, reason))
        channel.subscribers.add(sub)
        return sub

    def _replay(self, channel: _Channel, last_event_id: str, sub: Subscription) -> ResetReason | None:
        """Queue the channel's events after `last_event_id` on `sub`; the reason it cannot, if so."""
        match = _EVENT_ID.fullmatch(last_event_id)
        if match is None:
            return ResetReason.UNKNOWN_EVENT_ID
        epoch, seq = int(match[1]), int(match[2])
        if epoch != self.epoch:
            return ResetReason.GATEWAY_RESTARTED
        if seq > self._seq:
            return ResetReason.UNKNOWN_EVENT_ID
        if seq < channel.evicted_upto:
            return ResetReason.EVENTS_EXPIRED
        missed: list[OrderEvent] = []
        for event in reversed(channel.history):
            if event.seq <= seq:
                break
            missed.append(event)
        for event in reversed(missed):
            sub._put(event)
        return None

    def _unsubscribe(self, sub: Subscription) -> None:
        channel = self._channels.get(sub.shop)
        if channel is not None:
            channel.subscribers.discard(sub)

    def subscribers(self, shop: str) -> int:
        channel = self._channels.get(shop)
        return len(channel.subscribers) if channel is not None else 0

    def close(self) -> None:
        """End every subscription (the gateway is stopping); later subscriptions end at once."""
        self._closed = True
        for channel in self._channels.values():
            for sub in channel.subscribers:
                sub._end()
            channel.subscribers.clear()
