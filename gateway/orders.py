"""The order service: accepts orders idempotently, drives them across offers, applies supplier reports.

It owns the per-order serialisation (one lock per live order plus compare-and-set in the store) and
the background tasks that outlive a shop's request; the decisions themselves are in `lifecycle.py`.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Final, Protocol, assert_never

from adapters.interface import Charge, HttpRequest, Outcome, SupplierReply, Verdict
from gateway.catalog import Catalog
from gateway.changes import ChangeListener, OrderChanges
from gateway.clock import Clock
from gateway.config.model import OfferConfig, OrdersConfig, ProductConfig, WhenExhausted
from gateway.errors import (
    InvalidRequest,
    NoSupplierAvailable,
    OrderAlreadyFinal,
    OrderNotFound,
    UnsafeResubmit,
)
from gateway.identifiers import new_order_uid
from gateway.lifecycle import (
    FINAL_OUTCOMES,
    OPEN_OUTCOMES,
    Next,
    ResubmitRefused,
    Source,
    Transition,
    UnknownAttempt,
    apply_reply,
    certainly_uncharged,
    end_hold,
    exhaust,
    hold,
    resolve,
    resubmit,
    resubmit_refusal,
    start_attempt,
    submit_lost,
)
from gateway.logs import get_logger
from gateway.metrics import Metrics, ProductMetrics
from gateway.mobile import AccountInfo
from gateway.order import Order, OrderRequest, OrderStatus, Reason, order_uid_of, upstream_order_id
from gateway.routing import Router
from gateway.store import Store
from gateway.suppliers import Permit, Refusal, Supplier
from gateway.upstream import Upstream

log = get_logger(__name__)
DEFAULT_RETRY_AFTER_SECONDS: Final = 30  # when every offer is disabled: nothing says how long


def _step(update: Callable[[Order], Order | None], then: Next) -> Callable[[Order], Transition]:
    """A change that returns None when its precondition no longer holds on the order it is given."""

    def change(order: Order) -> Transition:
        updated = update(order)
        return Transition(order, Next.UNCHANGED) if updated is None else Transition(updated, then)

    return change


class ReportResult:
    """How a supplier report (callback) was taken: names match `gateway_callbacks_total{result}`."""

    ACCEPTED: Final = "accepted"
    DUPLICATE: Final = "duplicate"
    CONFLICT: Final = "conflict"
    UNKNOWN_ORDER: Final = "unknown_order"


class FinalWaits(Protocol):
    """Where a shop's request waits for its order to finish (the event feed: every instance's saves)."""

    async def wait_final(self, order: Order, timeout_seconds: float) -> bool: ...


ConfirmListener = Callable[[str, str], None]
"""Called with (supplier, upstream order id) when a callback's claim of failure needs a query."""

Admitted = tuple[OfferConfig, Permit, Order]
"""An offer let through, with the order as saved with that offer's attempt last."""


class OrderService:
    def __init__(
        self,
        *,
        config: OrdersConfig,
        catalog: Catalog,
        store: Store,
        changes: OrderChanges,
        suppliers: Mapping[str, Supplier],
        router: Router,
        upstream: Upstream,
        metrics: Metrics,
        finals: FinalWaits,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self._config = config
        self._finals = finals
        self._catalog = catalog
        self._store = store
        self._suppliers = suppliers
        self._router = router
        self._upstream = upstream
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self._changes = changes
        self._tasks: set[asyncio.Task[None]] = set()
        self._confirmers: list[ConfirmListener] = []
        self._routing: set[str] = set()  # uids with a route task in this process: no second one
        self._product_metrics: dict[str, ProductMetrics] = {
            name: metrics.product(name) for name in catalog.products
        }
        changes.on_change(self._saved)

    def on_change(self, listener: ChangeListener) -> None:
        self._changes.on_change(listener)

    def on_confirm(self, listener: ConfirmListener) -> None:
        self._confirmers.append(listener)

    def reconfigure(self, config: OrdersConfig, catalog: Catalog) -> None:
        """Take a reloaded configuration; orders under way keep the product they were placed with."""
        self._config = config
        self._catalog = catalog
        for name in catalog.products:
            if name not in self._product_metrics:
                self._product_metrics[name] = self._metrics.product(name)

    # -- accepting -------------------------------------------------------------------------

    async def place(
        self,
        shop: str,
        request: OrderRequest,
        product: ProductConfig,
        plan: list[OfferConfig],
        *,
        account_info: AccountInfo | None = None,
    ) -> tuple[Order, bool]:
        """Create the order (or find the one with this id) and start driving it if it is new.

        A supplier is admitted (breaker, concurrency, rate limit) before anything is recorded, and
        the first attempt is part of the created order: one durable write before the submit leaves.
        Raises `NoSupplierAvailable` when no offer is admitted.
        """
        admitted = await self._admit(plan, request.quantity)
        if admitted is None:
            raise NoSupplierAvailable(
                "every offer for this product is disabled, open-circuit, saturated, rate-limited "
                "or not serving the number's province",
                headers={"Retry-After": str(self.retry_after(product.offers))},
            )
        offer, permit = admitted
        now = self._clock.now()
        uid = new_order_uid(now, self._rng)
        order = Order(
            uid=uid,
            shop=shop,
            request=request,
            face_value_cents=product.face_value,
            created_at=now,
            updated_at=now,
            account_info=account_info,
        )
        begun = self._begin(order, offer, expected_attempts=0)
        assert begun is not None  # noqa: S101 (a new order has no attempt)
        order = self._changes.scheduled(begun)
        try:
            stored, created = await self._store.create_order(order)
        except BaseException:
            await self._suppliers[offer.supplier].abandon(permit)
            raise
        if not created:
            await self._suppliers[offer.supplier].abandon(permit)
            return stored, False
        self._metrics.processing[Reason.AWAITING_SUPPLIER] += 1
        self._changes.created(stored)
        self._spawn_route(uid, product, (offer, permit, stored))
        return stored, True

    def retry_after(self, offers: Sequence[OfferConfig]) -> int:
        """Whole seconds until one of `offers` may take orders again, for a 503's Retry-After."""
        soonest = min((self._suppliers[o.supplier].retry_after() for o in offers), default=float("inf"))
        return DEFAULT_RETRY_AFTER_SECONDS if soonest == float("inf") else max(1, math.ceil(soonest))

    async def _admit(self, plan: Sequence[OfferConfig], quantity: int) -> tuple[OfferConfig, Permit] | None:
        """The first offer of `plan` whose supplier lets a request through now and can pay for it.

        An offer that would take it only after a wait for a rate-limit slot comes after every offer
        that takes it at once: under a load above the best offer's limit, orders go on to the next
        offers instead of queueing for the best one while the others idle. Only when none can take
        it now does the order wait (up to `max_wait`) for a slot, at the first offer that has one.
        """
        later: list[OfferConfig] = []
        for offer in plan:
            supplier = self._suppliers[offer.supplier]
            permit = await supplier.admit(cost_cents=offer.cost * quantity, wait=False)
            if isinstance(permit, Permit):
                return offer, permit
            if permit is Refusal.RATE_LIMITED and supplier.config.rate_limit.max_wait > 0:
                later.append(offer)
            else:
                log.debug("supplier_skipped", supplier=supplier.name, why=permit.value)
        for offer in later:
            supplier = self._suppliers[offer.supplier]
            permit = await supplier.admit(cost_cents=offer.cost * quantity)
            if isinstance(permit, Permit):
                return offer, permit
            log.debug("supplier_skipped", supplier=supplier.name, why=permit.value)
        return None

    async def wait_final(self, order: Order, timeout_seconds: float) -> Order:
        """The order once final, or as it is when `timeout_seconds` have passed.

        Woken by the event feed, which hears of changes saved by any instance on the store.
        """
        if not order.status.final and timeout_seconds > 0:
            await self._finals.wait_final(order, timeout_seconds)
        return await self._changes.current(order.uid) or order

    # -- driving ---------------------------------------------------------------------------

    async def route_on(self, order: Order) -> bool:
        """Route on an order between attempts (a failure was reported, or its router died).

        An order whose product a reload removed has no offers left: it fails, if nothing charged.
        """
        product = self._catalog.products.get(order.request.product)
        if product is not None:
            return self.resume(order.uid, product)
        await self.transition(order.uid, _step(self._exhausted, Next.FINISHED))
        return False

    def resume(self, uid: str, product: ProductConfig) -> bool:
        """Route on an order that waits between attempts, unless this process is already doing so.

        Safe to call from anywhere, any number of times: a second router (here or on another
        instance) loses at the transition that would start an attempt, and changes nothing.
        """
        if uid in self._routing:
            return False
        self._spawn_route(uid, product)
        return True

    def _spawn_route(
        self,
        uid: str,
        product: ProductConfig,
        admitted: Admitted | None = None,
        *,
        only: bool = False,
    ) -> None:
        self._routing.add(uid)
        self._spawn(self._route(uid, product, admitted, only=only))

    async def _route(
        self,
        uid: str,
        product: ProductConfig,
        admitted: Admitted | None = None,
        *,
        only: bool = False,
    ) -> None:
        """Try offers until one accepts, ends the order, or leaves the outcome unknown (then wait).

        `admitted` is an offer with the order as saved with its attempt last: send that attempt first.
        `only`: that offer is the only one to try (an operator chose it); no other follows it.
        """
        try:
            await self._route_offers(uid, product, admitted, only=only)
        finally:
            self._routing.discard(uid)

    async def _route_offers(
        self, uid: str, product: ProductConfig, admitted: Admitted | None, *, only: bool
    ) -> None:
        while True:
            if admitted is None:
                begun = await self._next_offer(uid, product, only=only)
                if begun is None:
                    return
                offer, permit, order = begun
            else:
                # The order as the write that began the attempt saved it: the submit needs only its
                # request and that attempt's id, neither of which any later change can alter.
                offer, permit, order = admitted
            supplier = self._suppliers[offer.supplier]
            upstream_id = order.attempts[-1].upstream_order_id
            reply, duration_ms = await self._submit(supplier, permit, order, product, offer, upstream_id)
            result = await self.apply(reply, source=Source.SUBMIT, duration_ms=duration_ms)
            # Route on whenever nothing can have been charged, whoever settled the attempt (a query
            # may have beaten this reply to it): an order must never wait with nobody routing it.
            if result is None or not certainly_uncharged(result.order):
                return
            admitted = None

    async def _next_offer(self, uid: str, product: ProductConfig, *, only: bool = False) -> Admitted | None:
        """Admit the next offer and record its attempt durably; None when there is nothing to send.

        `only`: no further offer may be tried (the last was an operator's choice): the order ends
        or is held. A held order waits for an operator: nothing is routed for it here.
        """
        order = await self._current(uid)
        # Only a certain "nothing charged" lets a new attempt start (checked again when it is saved).
        if order is None or not certainly_uncharged(order) or order.reason is Reason.HELD:
            return None
        seen = len(order.attempts)
        tried = {a.supplier for a in order.attempts}
        plan = (
            self._router.plan(product, tried, province=order.province)
            if seen < self._config.max_attempts and not only
            else []
        )
        admitted = await self._admit(plan, order.request.quantity)
        if admitted is None:
            await self.transition(uid, partial(self._used_up, expected_attempts=seen))
            return None
        offer, permit = admitted
        # Durable before the request leaves: a crash from here on is reconciled, never resent.
        transition = await self.transition(
            uid, _step(partial(self._begin, offer=offer, expected_attempts=seen), Next.AWAIT_RESULT)
        )
        if transition is None or transition.next is not Next.AWAIT_RESULT:
            # Another router started an attempt (or ended the order) since we looked: its turn.
            await self._suppliers[offer.supplier].abandon(permit)
            return None
        return offer, permit, transition.order

    def _begin(self, order: Order, offer: OfferConfig, expected_attempts: int) -> Order | None:
        return start_attempt(
            order,
            supplier=offer.supplier,
            sku=offer.sku,
            # An offer's cost is per unit; the attempt's is what the order costs until the supplier says.
            cost_cents=offer.cost * order.request.quantity,
            upstream_order_id=upstream_order_id(order.uid, len(order.attempts) + 1),
            now=self._clock.now(),
            expected_attempts=expected_attempts,
        )

    async def _submit(
        self,
        supplier: Supplier,
        permit: Permit,
        order: Order,
        product: ProductConfig,
        offer: OfferConfig,
        upstream_id: str,
    ) -> tuple[SupplierReply, int | None]:
        charge = Charge(
            upstream_order_id=upstream_id,
            sku=offer.sku,
            account=order.request.account,
            account_kind=product.account,
            face_value_cents=product.face_value,
            quantity=order.request.quantity,
            max_cost_cents=offer.cost,
            callback_url=supplier.callback_url,
            timestamp=self._clock.now(),
        )
        try:
            request: HttpRequest = supplier.adapter.build_submit(charge)
        except ValueError as exc:
            # Nothing left the gateway: the offer cannot be sent as configured.
            log.error("supplier_request_unbuildable", supplier=supplier.name, error=str(exc))
            await supplier.abandon(permit)
            return SupplierReply(
                upstream_order_id=upstream_id, verdict=Verdict.NOT_EXECUTED, message=str(exc)
            ), None
        try:
            reply, exchange = await self._upstream.submit(supplier, upstream_id, request)
        except BaseException:
            # Cancelled mid-send (shutdown): the attempt stays unknown for reconciliation; free the slot.
            supplier.cancel(permit)
            raise
        await supplier.finish(permit, reply, sent=exchange.sent, seconds=exchange.seconds)
        if reply.verdict is Verdict.UNKNOWN:
            # Operators need to see what the supplier sent (the message carries a bounded excerpt).
            log.warning(
                "supplier_reply_unknown",
                supplier=supplier.name,
                upstream_order_id=upstream_id,
                code=reply.code,
                detail=reply.message,
            )
        log.debug(
            "supplier_request_completed",
            supplier=supplier.name,
            upstream_order_id=upstream_id,
            verdict=reply.verdict.value,
            code=reply.code,
            seconds=round(exchange.seconds, 4),
        )
        return reply, round(exchange.seconds * 1000)

    # -- applying reports ------------------------------------------------------------------

    async def apply(
        self,
        reply: SupplierReply,
        *,
        source: Source,
        duration_ms: int | None = None,
        supplier: str | None = None,
    ) -> Transition | None:
        """Apply one report about one attempt; None if no order has that upstream id (sent to `supplier`)."""
        uid = order_uid_of(reply.upstream_order_id)
        grace = self._config.not_found_grace
        try:
            return await self.transition(
                uid,
                lambda o: apply_reply(
                    o,
                    reply,
                    source=source,
                    now=self._clock.now(),
                    not_found_grace_seconds=grace,
                    duration_ms=duration_ms,
                    supplier=supplier,
                ),
            )
        except UnknownAttempt:
            return None

    async def report(self, supplier: str, reply: SupplierReply, *, source: Source) -> str:
        """A callback's or query's report: applied to the attempt it names, if that went to `supplier`.

        Whom the attempt went to is checked inside the transition, on the order it changes: no read
        of its own beforehand (on a shared store, one round trip less per report).
        """
        transition = await self.apply(reply, source=source, supplier=supplier)
        if transition is None:
            return ReportResult.UNKNOWN_ORDER
        match transition.next:
            case Next.TRY_NEXT_OFFER:
                await self.route_on(transition.order)
                return ReportResult.ACCEPTED
            case Next.CONFIRM:
                for confirm in self._confirmers:
                    confirm(supplier, reply.upstream_order_id)
                return ReportResult.ACCEPTED
            case Next.FINISHED | Next.AWAIT_RESULT:
                return ReportResult.ACCEPTED
            case Next.UNCHANGED:
                return ReportResult.DUPLICATE
            case Next.CONFLICT:
                self._metrics.conflicts.labels(supplier).inc()
                return ReportResult.CONFLICT
            case _:
                assert_never(transition.next)

    async def resolve(
        self, shop: str, order_id: str, *, status: OrderStatus, note: str, operator: str
    ) -> Order:
        """An operator settles an order that is not final; the shop is notified as for any final order."""
        order = await self._store.get_order(shop, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id!r} for shop {shop!r}")

        def settle(current: Order) -> Transition:
            if current.status.final:
                raise OrderAlreadyFinal(
                    f"order is already {current.status.value}; a final state never changes"
                )
            return Transition(
                resolve(current, status=status, note=f"{operator}: {note}", now=self._clock.now()),
                Next.FINISHED,
            )

        transition = await self.transition(order.uid, settle)
        if transition is None:
            raise OrderNotFound(f"no order {order_id!r} for shop {shop!r}")
        log.warning("order_resolved_by_operator", order_uid=order.uid, operator=operator, status=status.value)
        return transition.order

    def _exhausted(self, order: Order, expected_attempts: int | None = None) -> Order | None:
        return exhaust(order, now=self._clock.now(), expected_attempts=expected_attempts)

    def _used_up(self, order: Order, expected_attempts: int) -> Transition:
        """Every offer is used up: the order fails, or is held for an operator (`orders.when_exhausted`)."""
        now = self._clock.now()
        match self._config.when_exhausted:
            case WhenExhausted.FAIL:
                failed = exhaust(order, now=now, expected_attempts=expected_attempts)
                return (
                    Transition(order, Next.UNCHANGED) if failed is None else Transition(failed, Next.FINISHED)
                )
            case WhenExhausted.HOLD:
                held = hold(order, now=now, expected_attempts=expected_attempts)
                if held is None:
                    return Transition(order, Next.UNCHANGED)
                log.warning("order_held", order_uid=order.uid, shop=order.shop, order_id=order.order_id)
                return Transition(held, Next.AWAIT_RESULT)
            case _:
                assert_never(self._config.when_exhausted)

    async def end_hold(self, order: Order) -> bool:
        """Fail a held order whose `orders.hold_for` has passed (the reconciler calls it when due).

        Judged on the latest stored order: one an operator resubmitted since is left alone.
        """
        change = partial(
            end_hold,
            now=self._clock.now(),
            hold_for_seconds=self._config.hold_for,
            expected_attempts=len(order.attempts),
        )
        transition = await self.transition(order.uid, _step(change, Next.FINISHED))
        if transition is None or transition.next is not Next.FINISHED:
            return False
        log.warning("order_hold_ended", order_uid=order.uid, shop=order.shop, order_id=order.order_id)
        return True

    async def resubmit(
        self, shop: str, order_id: str, *, supplier: str | None, note: str | None, operator: str
    ) -> Order:
        """An operator starts a new attempt (补单), only while every attempt certainly charged nothing.

        The attempt is started by a transition that checks that again on the stored order, with the
        count of attempts seen here: a second operator, router or instance cannot add another. It
        is then sent and routed on like any attempt; `supplier` makes its offer the only one tried.
        Raises `OrderNotFound`, `OrderAlreadyFinal`, `UnsafeResubmit`, `InvalidRequest` (a supplier
        without an offer for the product) or `NoSupplierAvailable` (nothing admitted now).
        """
        order = await self._store.get_order(shop, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id!r} for shop {shop!r}")
        product = self._catalog.products.get(order.request.product)
        plan: list[OfferConfig]
        if supplier is not None:
            plan = [o for o in product.offers if o.supplier == supplier] if product is not None else []
            if not plan:
                raise InvalidRequest(
                    "the request is invalid",
                    details=[
                        {"field": "supplier", "message": f"{supplier!r} offers no {order.request.product!r}"}
                    ],
                )
        elif product is not None:
            # Every offer again, in routing order: the ones tried before may have recovered.
            plan = self._router.plan(product, set(), province=order.province)
        else:
            plan = []
        order = await self._current(order.uid) or order
        self._refuse_resubmit(order, resubmit_refusal(order))
        seen = len(order.attempts)
        admitted = await self._admit(plan, order.request.quantity)
        if admitted is None or product is None:
            if admitted is not None:
                await self._suppliers[admitted[0].supplier].abandon(admitted[1])
            raise NoSupplierAvailable(
                "no offer for this order's product takes orders now; the order is unchanged",
                headers={"Retry-After": str(self.retry_after(plan))},
            )
        offer, permit = admitted
        now = self._clock.now()
        refused: ResubmitRefused | None = None

        def start(current: Order) -> Transition:
            nonlocal refused
            refused = resubmit_refusal(current, expected_attempts=seen)
            started = resubmit(
                current,
                supplier=offer.supplier,
                sku=offer.sku,
                cost_cents=offer.cost * current.request.quantity,
                upstream_order_id=upstream_order_id(current.uid, len(current.attempts) + 1),
                now=now,
                expected_attempts=seen,
                note=f"{operator}: {note}" if note else operator,
            )
            return (
                Transition(current, Next.UNCHANGED)
                if started is None
                else Transition(started, Next.AWAIT_RESULT)
            )

        try:
            transition = await self.transition(order.uid, start)
        except BaseException:
            await self._suppliers[offer.supplier].abandon(permit)
            raise
        if transition is None or transition.next is not Next.AWAIT_RESULT:
            await self._suppliers[offer.supplier].abandon(permit)
            if transition is None:
                raise OrderNotFound(f"no order {order_id!r} for shop {shop!r}")
            self._refuse_resubmit(transition.order, refused or ResubmitRefused.STALE)
            raise AssertionError("unreachable")  # pragma: no cover
        log.warning(
            "order_resubmitted_by_operator",
            order_uid=order.uid,
            operator=operator,
            supplier=offer.supplier,
            attempt=seen + 1,
        )
        self._spawn_route(order.uid, product, (offer, permit, transition.order), only=supplier is not None)
        return transition.order

    @staticmethod
    def _refuse_resubmit(order: Order, refused: ResubmitRefused | None) -> None:
        match refused:
            case None:
                return
            case ResubmitRefused.FINAL:
                raise OrderAlreadyFinal(f"order is already {order.status.value}; a final state never changes")
            case ResubmitRefused.UNSAFE | ResubmitRefused.STALE:
                open_attempts = [a for a in order.attempts if a.outcome in OPEN_OUTCOMES]
                raise UnsafeResubmit(
                    "an attempt of this order may have charged (open or unknown, or one just started):"
                    " a new attempt could charge twice",
                    details=[
                        {
                            "supplier": a.supplier,
                            "upstream_order_id": a.upstream_order_id,
                            "outcome": a.outcome.value,
                        }
                        for a in open_attempts
                    ],
                )
            case ResubmitRefused.EXHAUSTED:
                raise UnsafeResubmit(
                    f"the order has had {len(order.attempts)} attempts, as many as upstream order ids can"
                    " number: settle it with resolve"
                )
            case _:
                assert_never(refused)

    # -- state -----------------------------------------------------------------------------

    async def _current(self, uid: str) -> Order | None:
        return await self._changes.current(uid)

    async def transition(self, uid: str, change: Callable[[Order], Transition]) -> Transition | None:
        return await self._changes.transition(uid, change)

    def _saved(self, before: Order | None, after: Order) -> None:
        """Listener of every saved change: gauges, supplier health, finished orders and their waiters."""
        if before is None:
            return  # a new order: counted by `place`
        for earlier, later in zip(before.attempts, after.attempts, strict=False):
            if earlier.outcome is Outcome.PROCESSING and later.outcome in FINAL_OUTCOMES:
                supplier = self._suppliers.get(later.supplier)
                if supplier is not None:
                    supplier.settled(later.outcome)
        processing = self._metrics.processing
        if before.reason is not after.reason or before.status is not after.status:
            if before.status is OrderStatus.PROCESSING and before.reason in processing:
                processing[before.reason] -= 1
            if after.status is OrderStatus.PROCESSING and after.reason in processing:
                processing[after.reason] += 1
        if after.status.final and not before.status.final:
            self._finished(after)

    def _finished(self, order: Order) -> None:
        product_metrics = self._product_metrics.get(order.request.product)
        if product_metrics is not None:
            product_metrics.orders[order.status].inc()
            product_metrics.duration.observe(max(0.0, order.updated_at - order.created_at))
        deciding = order.deciding_attempt
        if order.status in (OrderStatus.SUCCEEDED, OrderStatus.PARTIAL) and deciding is not None:
            self._metrics.cost(deciding.supplier, order.request.product, deciding.cost_cents)
        log.info(
            "order_finished",
            order_uid=order.uid,
            shop=order.shop,
            order_id=order.order_id,
            status=order.status.value,
            reason=order.reason.value if order.reason else None,
            attempts=len(order.attempts),
        )

    # -- tasks -----------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            # The order stays as last saved; start-up recovery and reconciliation pick it up.
            log.exception("order_task_failed")

    async def recover(self, *, exclusive: bool) -> int:
        """At start-up: count the open orders into the gauges; alone on the store, also resume them.

        A process alone on its store (memory, SQLite) knows that nobody else is routing or sending
        anything: every order between attempts is resumed and every submit under way is lost, now.
        On a shared store another instance may be doing either, so orders are left to the
        reconciler's claims, which see an order as orphaned only once it has been quiet for a while.
        Returns how many orders were resumed.
        """
        resumed = 0
        for order in await self._store.processing_orders(limit=100_000):
            if order.reason in self._metrics.processing:
                self._metrics.processing[order.reason] += 1
            product = self._catalog.products.get(order.request.product)
            if not exclusive or product is None:
                continue
            if order.reason is Reason.HELD:
                continue  # waits for an operator, or for the reconciler at the hold's end
            if certainly_uncharged(order):
                resumed += self.resume(order.uid, product)
            else:
                await self.lost_submit(order)
        return resumed

    async def recount(self) -> None:
        """`gateway_orders_processing` from the store's own count, for a store other instances share.

        There they finish orders this process counted, so its own tally drifts; counted at each
        scrape, every instance reports the store's whole count (aggregate with max, not sum).
        """
        counts = await self._store.count_processing()
        processing = self._metrics.processing
        for reason in processing:
            processing[reason] = counts.get(reason, 0)

    async def lost_submit(self, order: Order) -> None:
        """Mark the last attempt's submit lost if it never ended and nobody here is sending it.

        Its process died mid-send (or its task did): only a query may tell what happened. Another
        instance may still have it on the wire; `submit_lost` keeps that harmless (see lifecycle).
        """
        last = order.last_attempt
        if order.uid in self._routing or last is None or last.replied or last.submit_ended_at is not None:
            return
        lost = partial(submit_lost, upstream_order_id=last.upstream_order_id, now=self._clock.now())
        await self.transition(order.uid, _step(lost, Next.AWAIT_RESULT))

    async def close(self, grace_seconds: float = 5.0) -> None:
        """Let in-flight work finish for a moment; what is cut off is recovered at the next start."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
