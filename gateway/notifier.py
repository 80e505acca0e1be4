"""Telling shops about final orders: signed POSTs from the outbox, retried with backoff across restarts.

The outbox is the orders whose notification is due (saved with the final state itself). Before a
POST the notification is leased by a compare-and-set save, so two workers never send it at once;
a worker that dies mid-POST leaves a lease that simply expires. At least once: shops dedupe by
order_id. Runs apart from order processing, so a slow or dead shop delays nothing else. A POST
goes only to a host the shop still lists, over connections that reach a private address only
where the shop lists that address (see destinations.py); a refused one is a failed delivery.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.auth import notification_signature
from gateway.cancellation import cancel_and_wait
from gateway.changes import OrderChanges
from gateway.clock import Clock
from gateway.config.model import NotifyConfig
from gateway.destinations import Address, DestinationRefused, NotificationSessions, allowed_addresses
from gateway.errors import NoNotifyUrl, OrderNotFinal, OrderNotFound
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.order import Delivery, Notification, Order
from gateway.store import Store
from gateway.views import public_view

log = get_logger(__name__)
POLL_SECONDS: Final = 1.0
BATCH: Final = 200
LEASE_MARGIN_SECONDS: Final = 5.0
MAX_RESPONSE_BYTES: Final = 64 * 1024
MAX_HISTORY: Final = 100  # POSTs kept per order: notify.max_attempts at most, plus operators' re-notifies


class Notifier:
    def __init__(
        self,
        *,
        config: NotifyConfig,
        secrets: Mapping[str, bytes],
        notify_hosts: Mapping[str, Sequence[str]],
        store: Store,
        changes: OrderChanges,
        sessions: NotificationSessions,
        metrics: Metrics,
        clock: Clock,
        rng: random.Random,
        concurrency: int = 64,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._hosts, self._allowed = _destinations(notify_hosts)
        self._store = store
        self._changes = changes
        self._sessions = sessions
        self._metrics = metrics.notifications_by_result
        self._clock = clock
        self._rng = rng
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._sending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)
        changes.on_change(self._changed)

    def reconfigure(
        self, config: NotifyConfig, secrets: Mapping[str, bytes], notify_hosts: Mapping[str, Sequence[str]]
    ) -> None:
        """Take a reloaded configuration; deliveries under way finish with the old timeout."""
        self._config = config
        self._secrets = secrets
        self._hosts, self._allowed = _destinations(notify_hosts)
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)

    def _changed(self, before: Order | None, after: Order) -> None:
        """An order that just finished here is sent for at once, by its uid: no scan of the outbox
        per order (on Redis a scan reads every shard). What this misses, the next poll finds."""
        if after.notification is not None and (before is None or before.notification is None):
            due = after.notification.due_at
            if due is not None and due <= self._clock.now():
                self._start(after.uid)
            else:
                self._wakeup.set()

    async def run(self) -> None:
        """Deliver what is due now, then whenever an order finishes or a poll interval passes."""
        while True:
            try:
                await self.deliver_due()
            except Exception:
                log.exception("notification_sweep_failed")
            try:
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def deliver_due(self) -> int:
        """Start a delivery for every notification due now; returns how many started."""
        started = 0
        for order in await self._store.due_notifications(self._clock.now(), limit=BATCH):
            started += self._start(order.uid)
        return started

    async def renotify(self, uid: str) -> Order:
        """An operator asks for the shop's notification again, now: even if it was delivered or given up.

        Made due at once in the store (any instance's poll may send it, under the usual lease), and
        started here. One more POST: it is recorded in the history like any other, and a failure is
        retried only while `notify.max_attempts` is not yet reached. Raises `OrderNotFinal` or
        `NoNotifyUrl` (409), `OrderNotFound` when the order is gone.
        """
        now = self._clock.now()

        def due_now(order: Order) -> Order:
            if not order.status.final:
                raise OrderNotFinal(
                    f"order is {order.status.value}; a shop is notified only of a final order"
                )
            if order.request.notify_url is None:
                raise NoNotifyUrl("the order was placed without a notify_url: there is nowhere to send it")
            note = order.notification or Notification(due_at=None)
            return replace(order, notification=replace(note, due_at=now, gave_up=False))

        saved = await self._changes.update(uid, due_now)
        if saved is None:
            raise OrderNotFound("no such order")
        log.info("notification_requested_by_operator", order_uid=uid)
        if not self._start(uid):
            self._wakeup.set()  # a POST of it is under way here: the next poll sends it again
        return saved

    def _start(self, uid: str) -> bool:
        """Start delivering `uid` unless this process already is; the lease keeps other instances off."""
        if uid in self._sending:
            return False
        self._sending.add(uid)
        task = asyncio.ensure_future(self._deliver(uid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def idle(self) -> None:
        """Until every delivery started so far has finished (for tests and shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        await cancel_and_wait(list(self._tasks))

    async def _deliver(self, uid: str) -> None:
        try:
            async with self._slots:
                order = await self._changes.update(uid, self._lease)
                if order is None:
                    return  # delivered, given up, or leased elsewhere
                delivery = await self._post(order)
                recorded = await self._changes.update(uid, lambda o: self._record(o, delivery))
                if recorded is not None:
                    self._count(recorded.notification)
        except Exception:
            # The lease expires and the notification comes due again: nothing is lost.
            log.exception("notification_failed", order_uid=uid)
        finally:
            self._sending.discard(uid)

    def _lease(self, order: Order) -> Order | None:
        note = order.notification
        now = self._clock.now()
        if note is None or note.due_at is None or note.due_at > now:
            return None  # delivered, given up, or leased elsewhere
        lease = replace(note, due_at=now + self._config.timeout + LEASE_MARGIN_SECONDS)
        return replace(order, notification=lease)

    async def _post(self, order: Order) -> Delivery:
        url = order.request.notify_url
        secret = self._secrets.get(order.shop)
        at = self._clock.now()
        started = time.perf_counter()
        if url is None or secret is None:
            return Delivery(at=at, status=None, error="no notify_url or shop secret", duration_ms=0)
        refusal = self._refusal(order.shop, url)
        if refusal is not None:
            log.warning("notification_refused", order_uid=order.uid, shop=order.shop, error=refusal)
            return Delivery(at=at, status=None, error=refusal, duration_ms=0)
        body = orjson.dumps(public_view(order))
        timestamp = str(int(at))
        headers = {
            "Content-Type": "application/json",
            "X-Gateway-Timestamp": timestamp,
            "X-Gateway-Signature": notification_signature(secret, timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        session = self._sessions.session(self._allowed.get(order.shop, frozenset()))
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                await response.content.read(MAX_RESPONSE_BYTES)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, DestinationRefused):
                error = f"refused: {exc.os_error.strerror}"
                log.warning("notification_refused", order_uid=order.uid, shop=order.shop, error=error)
            else:
                error = f"{type(exc).__name__}: {exc}"[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        return Delivery(
            at=at, status=status, error=error, duration_ms=round((time.perf_counter() - started) * 1000)
        )

    def _refusal(self, shop: str, url: str) -> str | None:
        """Why `url` may not be posted to now: its host left the shop's notify_hosts since intake."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if host is None:
            return "refused: notify_url has no host"
        if host not in self._hosts.get(shop, frozenset()):
            return f"refused: host {host!r} is not in shops.{shop}.notify_hosts"
        return None

    def _record(self, order: Order, delivery: Delivery) -> Order:
        note = order.notification or Notification(due_at=None)
        attempts = note.attempts + 1
        # Bounded, yet beyond max_attempts: an operator's re-notify adds POSTs to a full history.
        history = (*note.history, delivery)[-MAX_HISTORY:]
        now = self._clock.now()
        if delivery.status is not None and 200 <= delivery.status < 300:
            updated = replace(note, due_at=None, attempts=attempts, delivered_at=now, history=history)
        elif attempts >= self._config.max_attempts:
            updated = replace(note, due_at=None, attempts=attempts, gave_up=True, history=history)
        else:
            backoff = min(self._config.backoff.initial * 2 ** (attempts - 1), self._config.backoff.max)
            # Jitter spreads retries of many orders to one shop that came back at the same moment.
            due = now + backoff * (0.8 + 0.4 * self._rng.random())
            updated = replace(note, due_at=due, attempts=attempts, history=history)
        return replace(order, notification=updated)

    def _count(self, note: Notification | None) -> None:
        if note is None:
            return
        if note.delivered_at is not None:
            self._metrics["delivered"].inc()
        elif note.gave_up:
            self._metrics["gave_up"].inc()
            log.warning("notification_gave_up", attempts=note.attempts)
        else:
            self._metrics["retried"].inc()


def _destinations(
    notify_hosts: Mapping[str, Sequence[str]],
) -> tuple[dict[str, frozenset[str]], dict[str, frozenset[Address]]]:
    """Per shop: the hosts it may be notified at, and the private addresses it lists among them."""
    hosts = {shop: frozenset(host.lower() for host in listed) for shop, listed in notify_hosts.items()}
    return hosts, {shop: allowed_addresses(listed) for shop, listed in notify_hosts.items()}
