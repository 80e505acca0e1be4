"""Following orders that have no final result yet: query their suppliers, apply what they say.

Each sweep claims the orders whose stored check time has come (`schedule.py`, `Store.claim_checks`),
so that with several instances on one store each order is looked at by one of them, and an order
whose instance died comes due for another. For each claimed order: past `manual_review_after` it
goes to manual review; waiting between attempts with nobody routing it (its router died) it is
routed on; a submit whose end nobody saw is marked lost; an attempt whose outcome is unknown, or
accepted and older than `reconcile_after`, is queried; one whose callback claimed a failure is
queried at once, to confirm it; a held order is left to operators until `hold_for` has passed,
then failed. Queries are batched where the protocol allows. What the answers mean is decided in
`lifecycle.py`, through the order service, as for callbacks.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from adapters.interface import Outcome
from gateway.changes import OrderChanges
from gateway.clock import Clock
from gateway.config.model import OrdersConfig
from gateway.lifecycle import OPEN_OUTCOMES, Source, certainly_uncharged
from gateway.logs import get_logger
from gateway.order import Attempt, Order, Reason
from gateway.orders import OrderService
from gateway.schedule import CheckSchedule
from gateway.store import Store
from gateway.suppliers import Permit, Supplier
from gateway.upstream import Upstream

log = get_logger(__name__)
SWEEP_LIMIT = 10_000
QUERY_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class SweepReport:
    queried: int
    settled: int
    manual_review: int
    rerouted: int = 0
    hold_ended: int = 0


class Reconciler:
    def __init__(
        self,
        *,
        config: OrdersConfig,
        store: Store,
        suppliers: Mapping[str, Supplier],
        upstream: Upstream,
        orders: OrderService,
        changes: OrderChanges,
        schedule: CheckSchedule,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._config = config
        self._store = store
        self._suppliers = suppliers
        self._upstream = upstream
        self._orders = orders
        self._changes = changes
        self._schedule = schedule
        self._clock = clock
        self._rng = rng
        self._tasks: set[asyncio.Task[None]] = set()

    def reconfigure(self, config: OrdersConfig) -> None:
        self._config = config
        self._schedule.reconfigure(config)

    async def run(self) -> None:
        """Sweep at once (a restart finds what the last process left), then every `reconcile_every`,
        with jitter so that instances and suppliers are not hit in step."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("reconcile_sweep_failed")
            period = self._config.reconcile_every
            await asyncio.sleep(period * (0.8 + 0.4 * self._rng.random()))

    async def sweep(self) -> SweepReport:
        """One pass over the orders due for a check, claimed for this instance."""
        now = self._clock.now()
        until = now + self._schedule.lease_seconds
        claimed = await self._store.claim_checks(now, until=until, limit=SWEEP_LIMIT)
        due: dict[str, list[Attempt]] = defaultdict(list)
        reviews = rerouted = hold_ended = 0
        for order in claimed:
            if order.reason is Reason.HELD:
                # Held for an operator: nothing is asked or routed; at the hold's end it fails.
                if await self._orders.end_hold(order):
                    hold_ended += 1
                else:
                    await self._reschedule(order)
                continue
            acted = False
            if (
                now - order.created_at >= self._config.manual_review_after
                and order.reason is not Reason.MANUAL_REVIEW
            ):
                reviews += await self._to_manual_review(order)
                acted = True
            attempt = order.last_attempt
            overdue = attempt is not None and now - attempt.started_at >= self._config.reconcile_after
            if certainly_uncharged(order):
                if now - order.updated_at >= self._config.reconcile_after:
                    # Between attempts for a while: whoever was routing it is gone (a store error, a
                    # lost task, a dead instance). Routing on is safe; a live router wins the save.
                    rerouted += await self._orders.route_on(order)
                    acted = True
            elif (
                attempt is not None
                and attempt.outcome in OPEN_OUTCOMES
                and attempt.supplier in self._suppliers
                and (attempt.outcome is Outcome.UNKNOWN or overdue)
            ):
                if overdue:
                    await self._orders.lost_submit(order)
                due[attempt.supplier].append(attempt)
                acted = True
            if not acted:
                await self._reschedule(order)
        # Batches go out side by side, each supplier still within its own rate limit: after an
        # outage one query at a time would take (orders waiting) x (query latency) to drain.
        slots = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def bounded(supplier: Supplier, batch: Sequence[str]) -> tuple[int, int]:
            async with slots:
                return await self._query(supplier, batch, now)

        results = await asyncio.gather(
            *(
                bounded(self._suppliers[name], [attempt.upstream_order_id for attempt in batch])
                for name, attempts in due.items()
                for batch in _batches(attempts, self._suppliers[name].adapter.max_query_batch)
            )
        )
        queried = sum(asked for asked, _ in results)
        settled = sum(answered for _, answered in results)
        if queried or reviews or rerouted or hold_ended:
            log.info(
                "reconcile_swept",
                queried=queried,
                settled=settled,
                manual_review=reviews,
                rerouted=rerouted,
                hold_ended=hold_ended,
            )
        return SweepReport(
            queried=queried, settled=settled, manual_review=reviews, rerouted=rerouted, hold_ended=hold_ended
        )

    def confirm(self, supplier: str, upstream_order_id: str) -> None:
        """Query one attempt now, in the background: a callback claimed it failed.

        If the query cannot go out (rate limit, breaker), the attempt is unknown and the next
        sweep asks; nothing is lost either way.
        """
        known = self._suppliers.get(supplier)
        if known is None:
            return
        task = asyncio.ensure_future(self._confirm(known, upstream_order_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm(self, supplier: Supplier, upstream_order_id: str) -> None:
        try:
            await self._query(supplier, [upstream_order_id], self._clock.now())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("callback_confirmation_failed", supplier=supplier.name)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)

    async def _query(self, supplier: Supplier, ids: Sequence[str], now: float) -> tuple[int, int]:
        """Query one batch: (orders asked about, orders the answers settled)."""
        permit = await supplier.admit(for_query=True)
        if not isinstance(permit, Permit):
            # Queries count against the supplier's limit too; these wait for the next sweep.
            log.debug("reconcile_deferred", supplier=supplier.name, why=permit.value, orders=len(ids))
            return 0, 0
        try:
            replies, exchange = await self._upstream.query(supplier, ids, now)
        except BaseException:
            supplier.cancel(permit)  # cancelled mid-query: its slot must not stay taken
            raise
        signal = next((r for r in replies.values() if r.throttled), None) or next(iter(replies.values()))
        await supplier.finish(permit, signal, sent=exchange.sent, seconds=exchange.seconds)
        settled = 0
        asked = len(ids)
        for upstream_id in ids:
            reply = replies.get(upstream_id)
            if reply is None:
                continue
            if reply.not_found and len(ids) > 1:
                # A batch reply may be capped, and an id missing from it reads as "not found":
                # such evidence counts only when the id was asked about alone.
                alone_asked, alone_settled = await self._query(supplier, [upstream_id], now)
                asked += alone_asked
                settled += alone_settled
                continue
            result = await self._orders.report(supplier.name, reply, source=Source.QUERY)
            log.debug(
                "order_reconciled",
                supplier=supplier.name,
                upstream_order_id=upstream_id,
                verdict=reply.verdict.value,
                result=result,
            )
            settled += reply.outcome not in OPEN_OUTCOMES
        return asked, settled

    async def _reschedule(self, order: Order) -> None:
        """An order claimed with nothing to do came due by a stale time (settings reloaded, a store
        written by an older version): save it with its proper time, or it would come due again at
        every claim's end. An order whose stored time is right is left alone: no write."""

        def scheduled(current: Order) -> Order | None:
            return replace(current) if current.check_at != self._schedule.check_at(current) else None

        if order.check_at != self._schedule.check_at(order):
            await self._changes.update(order.uid, scheduled)

    async def _to_manual_review(self, order: Order) -> int:
        def review(current: Order) -> Order | None:
            if current.status.final or current.reason is Reason.MANUAL_REVIEW:
                return None
            return replace(current, reason=Reason.MANUAL_REVIEW, updated_at=self._clock.now())

        if await self._changes.update(order.uid, review) is None:
            return 0
        log.warning(
            "order_needs_manual_review", order_uid=order.uid, shop=order.shop, order_id=order.order_id
        )
        return 1


def _batches(attempts: Sequence[Attempt], size: int) -> list[Sequence[Attempt]]:
    size = max(size, 1)
    return [attempts[i : i + size] for i in range(0, len(attempts), size)]
