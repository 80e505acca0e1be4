"""The balance poller (CONTRACT.md §9): reads every supplier's balance call within its rate limit.

The only caller of the balance endpoints: it sends nothing outside a rate-limit slot taken with
`Supplier.admit(for_query=True)`, and it never fails or holds up an order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import Final

from gateway.clock import Clock
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.money import format_money
from gateway.suppliers import Permit, Supplier
from gateway.upstream import Upstream

log = get_logger(__name__)
TICK_SECONDS: Final = 0.25
"""How often the watch looks at the clock: a due time on a moved (test) clock is met within it."""
DEFERRED_RETRY_SECONDS: Final = 1.0
"""How soon a poll the rate limit turned away is tried again."""


class BalanceWatch:
    """Polls every supplier's balance every `balance.check_every`, and at once when one is asked for.

    One poll per supplier at a time. Suppliers added by a reload are picked up at the next tick;
    retired ones are no longer polled.
    """

    def __init__(
        self, suppliers: Mapping[str, Supplier], upstream: Upstream, metrics: Metrics, clock: Clock
    ) -> None:
        self._suppliers = suppliers
        self._upstream = upstream
        self._metrics = metrics
        self._clock = clock
        self._due: dict[str, float] = {}
        self._polling: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    async def run(self) -> None:
        try:
            while True:
                self._start_due_polls()
                self._wake.clear()
                try:
                    async with asyncio.timeout(TICK_SECONDS):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            tasks = list(self._polling.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_due_polls(self) -> None:
        now = self._clock.monotonic()
        for name, supplier in list(self._suppliers.items()):
            if supplier.retired or name in self._polling:
                continue
            supplier.balance.listen(self._wake.set)
            if supplier.balance.wanted or now >= self._due.get(name, now):
                task = asyncio.create_task(self._poll(supplier), name=f"balance-{name}")
                self._polling[name] = task
                task.add_done_callback(partial(self._polled, name))

    def _polled(self, name: str, task: asyncio.Task[None]) -> None:
        self._polling.pop(name, None)
        self._wake.set()  # a re-poll asked for while this one ran is due now

    async def _poll(self, supplier: Supplier) -> None:
        try:
            self._due[supplier.name] = self._clock.monotonic() + await self.poll(supplier)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("supplier_balance_poll_failed", supplier=supplier.name)
            self._due[supplier.name] = self._clock.monotonic() + supplier.config.balance.check_every

    async def poll(self, supplier: Supplier) -> float:
        """Read one supplier's balance now; returns the seconds until the next poll."""
        balance = supplier.balance
        every = supplier.config.balance.check_every
        permit = await supplier.admit(for_query=True)
        if not isinstance(permit, Permit):
            # The supplier's limit comes first: orders need its slots more than the balance does.
            log.debug("supplier_balance_deferred", supplier=supplier.name, why=permit.value)
            return min(every, DEFERRED_RETRY_SECONDS)
        balance.wanted = False
        reflected = balance.begin_read()
        try:
            reply, exchange = await self._upstream.balance(supplier, self._clock.now())
        finally:
            supplier.finish_plain(permit)
        if reply.balance_cents is None:
            balance.stale = True
            log.warning(
                "supplier_balance_unread",
                supplier=supplier.name,
                code=reply.code,
                detail=reply.message or exchange.error,
            )
            return every
        at = self._clock.now()
        balance.read(reply.balance_cents, at, reflected)
        self._metrics.supplier_balance.labels(supplier.name).set(reply.balance_cents / 100)
        self._metrics.supplier_balance_checked.labels(supplier.name).set(at)
        low = balance.low(supplier.config.balance.low)
        # The supplier's own mark, so an alert needs no threshold of its own per supplier.
        self._metrics.supplier_balance_low.labels(supplier.name).set(1 if low else 0)
        log.info(
            "supplier_balance_read",
            supplier=supplier.name,
            balance=format_money(reply.balance_cents),
            low=low,
        )
        return every
