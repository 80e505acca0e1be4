"""Relaying a shop's event subscription to one client, whatever the wire: SSE (`stream.py`) or WebSocket
(`websocket.py`), so both transports share one source of events and behave alike.

Owns opening a subscription against the shop's `max_streams`, the one-order filter, heartbeats, noticing
a hang-up and the write deadline. Knows no wire format and no authentication.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, Protocol

from aiohttp import web

from gateway.events import Item, Reset, Subscription
from gateway.runtime import Runtime

# A client that has not taken a write in this long is not reading: its stream is closed.
WRITE_TIMEOUT_SECONDS: Final = 30.0
# How soon an idle stream notices that its client hung up. aiohttp tells a handler only when it
# writes, and an idle stream writes only a heartbeat; until then the stream would hold one of its
# shop's `max_streams` slots, and a client reconnecting at once would be refused.
HANGUP_CHECK_SECONDS: Final = 1.0


class Outlet(Protocol):
    """One client's end of a relay, in its transport's wire format."""

    async def send(self, items: Sequence[Item]) -> None:
        """Write a batch of items (the relay bounds how long it may take)."""
        ...

    async def beat(self) -> None:
        """Write a heartbeat."""
        ...

    def hung_up(self) -> bool:
        """Whether the client is known to be gone."""
        ...


async def open_subscription(
    runtime: Runtime, shop: str, last_event_id: str | None, *, replacing: Subscription | None = None
) -> Subscription:
    """A placed subscription to `shop`'s events after `last_event_id`, counted against its `max_streams`.

    Raises `TooManyStreams` over the cap and `StoreUnavailable` if the feed cannot read where to start,
    both before anything is sent, so a transport can still answer with an HTTP error. `replacing` hands
    over that subscription's slot (it is closed once the new one is placed, and kept if placing fails),
    so a client changing where it starts is never refused for its own stream.
    """
    shop_config = runtime.config.shops.get(shop)
    cap = shop_config.max_streams if shop_config is not None and replacing is None else None
    subscription = runtime.events.subscribe(shop, last_event_id, max_streams=cap)
    try:
        await subscription.opened()
    except BaseException:
        subscription.close()
        raise
    if replacing is not None:
        replacing.close()
    return subscription


def for_order(items: Sequence[Item], order_id: str | None) -> Sequence[Item]:
    """The items a stream limited to `order_id` (None: not limited) passes on: its events, and every reset."""
    if order_id is None:
        return items
    return [item for item in items if isinstance(item, Reset) or item.order_id == order_id]


@asynccontextmanager
async def write_deadline() -> AsyncIterator[None]:
    """Bounds one write: `TimeoutError` (see `relaying`) if the client does not take it in time."""
    async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
        yield


async def relay(
    subscription: Subscription,
    outlet: Outlet,
    heartbeat_seconds: float,
    *,
    order_id: str | None = None,
    beat_when_idle: bool = True,
) -> bool:
    """Send what `subscription` delivers until it ends (True) or the client hangs up (False).

    A heartbeat goes out after `heartbeat_seconds` without a write or, with `beat_when_idle` False,
    every `heartbeat_seconds` whatever else was written. With `order_id`, only that order's events go
    out (and every reset). Raises `TimeoutError` if the client does not take a write in time.
    """
    loop = asyncio.get_running_loop()
    beaten_at = loop.time()
    while True:
        batch = await subscription.next(min(HANGUP_CHECK_SECONDS, heartbeat_seconds))
        if batch is None:
            return True
        items = for_order(batch, order_id)
        if items:
            async with write_deadline():
                await outlet.send(items)
            if beat_when_idle:
                beaten_at = loop.time()
        elif outlet.hung_up():
            return False
        if loop.time() - beaten_at >= heartbeat_seconds:
            async with write_deadline():
                await outlet.beat()
            beaten_at = loop.time()


@asynccontextmanager
async def relaying(request: web.Request, close: Callable[[], None]) -> AsyncIterator[None]:
    """Around a relay's handler: ends quietly when the client hung up, aborts the connection of a client
    that stopped reading, and always calls `close` (the subscription's)."""
    try:
        yield
    except ConnectionResetError:
        pass  # the client hung up: nothing more can be sent to it
    except TimeoutError:
        # The client stopped reading; aborting frees the connection rather than waiting on it again.
        if request.transport is not None:
            request.transport.abort()
    finally:
        close()
