"""The order state machine: how an order changes when an attempt starts, a supplier answers, or offers end.

Pure functions over frozen values; no I/O. Every rule of DESIGN.md's outcome table is decided here,
and a final state never changes: contradictions become incidents.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import assert_never

from adapters.interface import Outcome, SupplierReply, Verdict
from gateway.order import Attempt, Incident, Notification, Order, OrderStatus, Reason

FINAL_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL, Outcome.FAILED, Outcome.NOT_EXECUTED})
DELIVERED = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL})


class Next(StrEnum):
    """What the caller does after a transition."""

    FINISHED = "finished"  # the order just became final: notify
    TRY_NEXT_OFFER = "try_next_offer"  # the attempt certainly did not charge: route on
    AWAIT_RESULT = "await_result"  # accepted or unknown: wait for a callback or query, never fail over
    UNCHANGED = "unchanged"  # a duplicate or stale report: nothing to do
    CONFLICT = "conflict"  # a report that contradicts a final state: stored as an incident only


@dataclass(frozen=True, slots=True)
class Transition:
    order: Order
    next: Next


class UnknownAttempt(LookupError):
    """A report about an upstream id this order never used."""


def start_attempt(
    order: Order, *, supplier: str, sku: str, cost_cents: int, upstream_order_id: str, now: float
) -> Order:
    assert not order.status.final, "a final order gets no new attempt"  # noqa: S101 (invariant)
    attempt = Attempt(
        supplier=supplier, sku=sku, upstream_order_id=upstream_order_id, cost_cents=cost_cents, started_at=now
    )
    return replace(
        order,
        attempts=(*order.attempts, attempt),
        reason=Reason.AWAITING_SUPPLIER,
        updated_at=now,
        message=None,
    )


def apply_reply(
    order: Order,
    reply: SupplierReply,
    *,
    now: float,
    not_found_grace_seconds: float,
    duration_ms: int | None = None,
) -> Transition:
    """Apply one supplier report (submit reply, query answer or callback) about one attempt."""
    index = _attempt_index(order, reply.upstream_order_id)
    attempt = order.attempts[index]
    outcome = _effective_outcome(attempt, reply, now, not_found_grace_seconds)

    if attempt.outcome in FINAL_OUTCOMES:
        return _late_report(order, attempt, reply, outcome, now)
    if order.status.final:
        # An operator settled the order while this attempt was still open.
        settled = _settle_open_attempt(order, index, attempt, reply, outcome, duration_ms)
        if outcome in (Outcome.PROCESSING, Outcome.UNKNOWN):
            return Transition(order, Next.UNCHANGED)
        if (outcome in DELIVERED) != (order.status in (OrderStatus.SUCCEEDED, OrderStatus.PARTIAL)):
            return _conflict(settled, now, f"{outcome.value}_after_{order.status.value}", attempt, reply)
        return Transition(settled, Next.UNCHANGED)

    updated = _updated_attempt(attempt, reply, outcome, duration_ms)
    attempts = (*order.attempts[:index], updated, *order.attempts[index + 1 :])
    is_current = index == len(order.attempts) - 1
    message = reply.message
    match outcome:
        case Outcome.SUCCEEDED:
            return Transition(
                _finish(
                    order,
                    attempts=attempts,
                    status=OrderStatus.SUCCEEDED,
                    reason=None,
                    message=message,
                    now=now,
                ),
                Next.FINISHED,
            )
        case Outcome.PARTIAL:
            return Transition(
                _finish(
                    order,
                    attempts=attempts,
                    status=OrderStatus.PARTIAL,
                    reason=None,
                    message=message,
                    now=now,
                ),
                Next.FINISHED,
            )
        case Outcome.FAILED if reply.verdict is Verdict.ACCOUNT_INVALID:
            return Transition(
                _finish(
                    order,
                    attempts=attempts,
                    status=OrderStatus.FAILED,
                    reason=Reason.ACCOUNT_INVALID,
                    message=message,
                    now=now,
                ),
                Next.FINISHED,
            )
        case Outcome.FAILED | Outcome.NOT_EXECUTED:
            changed = replace(order, attempts=attempts, updated_at=now, message=message)
            return Transition(changed, Next.TRY_NEXT_OFFER if is_current else Next.UNCHANGED)
        case Outcome.PROCESSING:
            reason = Reason.AWAITING_SUPPLIER if is_current else order.reason
            if order.reason is Reason.MANUAL_REVIEW:
                reason = Reason.MANUAL_REVIEW
            changed = replace(order, attempts=attempts, updated_at=now, reason=reason)
            return Transition(changed, Next.AWAIT_RESULT)
        case Outcome.UNKNOWN:
            reason = Reason.MANUAL_REVIEW if order.reason is Reason.MANUAL_REVIEW else Reason.OUTCOME_UNKNOWN
            changed = replace(order, attempts=attempts, updated_at=now, reason=reason)
            return Transition(changed, Next.AWAIT_RESULT)
        case _:
            assert_never(outcome)


def exhaust(order: Order, *, now: float, reason: Reason | None = None) -> Order:
    """No offer is left to try: the order fails, `supplier_failed` if a supplier declined it."""
    if reason is None:
        declined = any(a.outcome is Outcome.FAILED for a in order.attempts)
        reason = Reason.SUPPLIER_FAILED if declined else Reason.NO_SUPPLIER_AVAILABLE
    message = order.message or (
        "no supplier could take the order" if reason is Reason.NO_SUPPLIER_AVAILABLE else None
    )
    return _finish(
        order, attempts=order.attempts, status=OrderStatus.FAILED, reason=reason, message=message, now=now
    )


def resolve(order: Order, *, status: OrderStatus, note: str, now: float) -> Order:
    """An operator settles an order that reconciliation could not.

    The note is for operators: it is kept as an incident, and the shop sees only a fixed message.
    """
    assert status in (OrderStatus.SUCCEEDED, OrderStatus.FAILED)  # noqa: S101 (caller validated)
    reason = None if status is OrderStatus.SUCCEEDED else Reason.RESOLVED_BY_OPERATOR
    incident = Incident(at=now, kind="resolved_by_operator", detail=note)
    message = "resolved by an operator"
    resolved = _finish(order, attempts=order.attempts, status=status, reason=reason, message=message, now=now)
    return replace(resolved, incidents=(*order.incidents, incident))


def _attempt_index(order: Order, upstream_order_id: str) -> int:
    for index in range(len(order.attempts) - 1, -1, -1):
        if order.attempts[index].upstream_order_id == upstream_order_id:
            return index
    raise UnknownAttempt(upstream_order_id)


def _effective_outcome(attempt: Attempt, reply: SupplierReply, now: float, grace: float) -> Outcome:
    # "Not found" proves nothing until the supplier has had time to record the order.
    if reply.verdict is Verdict.NOT_FOUND and now - attempt.started_at >= grace:
        return Outcome.NOT_EXECUTED
    return reply.outcome


def _updated_attempt(
    attempt: Attempt, reply: SupplierReply, outcome: Outcome, duration_ms: int | None
) -> Attempt:
    return replace(
        attempt,
        outcome=outcome,
        code=reply.code if reply.code is not None else attempt.code,
        message=reply.message if reply.message is not None else attempt.message,
        duration_ms=duration_ms if duration_ms is not None else attempt.duration_ms,
        supplier_order_id=reply.supplier_order_id or attempt.supplier_order_id,
        delivered_cents=reply.delivered_cents
        if reply.delivered_cents is not None
        else attempt.delivered_cents,
        cost_cents=reply.cost_cents if reply.cost_cents is not None else attempt.cost_cents,
        replied=True,
    )


def _settle_open_attempt(
    order: Order,
    index: int,
    attempt: Attempt,
    reply: SupplierReply,
    outcome: Outcome,
    duration_ms: int | None,
) -> Order:
    updated = _updated_attempt(attempt, reply, outcome, duration_ms)
    if updated == attempt:
        return order
    return replace(order, attempts=(*order.attempts[:index], updated, *order.attempts[index + 1 :]))


def _late_report(
    order: Order, attempt: Attempt, reply: SupplierReply, outcome: Outcome, now: float
) -> Transition:
    """A report about an attempt whose outcome is already final."""
    if outcome in (Outcome.PROCESSING, Outcome.UNKNOWN):
        return Transition(order, Next.UNCHANGED)  # progress after a final result means nothing
    if outcome == attempt.outcome or {outcome, attempt.outcome} <= {Outcome.FAILED, Outcome.NOT_EXECUTED}:
        return Transition(order, Next.UNCHANGED)  # a duplicate, or failure either way: nothing was charged
    return _conflict(order, now, f"{attempt.outcome.value}_then_{outcome.value}", attempt, reply)


def _conflict(order: Order, now: float, kind: str, attempt: Attempt, reply: SupplierReply) -> Transition:
    detail = (
        f"{attempt.supplier} {attempt.upstream_order_id}: reported {reply.verdict.value}"
        f" (code {reply.code}, {reply.message!r}) after the attempt was {attempt.outcome.value}"
        f" and the order {order.status.value}"
    )
    incident = Incident(at=now, kind=kind, detail=detail)
    return Transition(replace(order, incidents=(*order.incidents, incident), updated_at=now), Next.CONFLICT)


def _finish(
    order: Order,
    *,
    attempts: tuple[Attempt, ...],
    status: OrderStatus,
    reason: Reason | None,
    message: str | None,
    now: float,
) -> Order:
    # Due at once, and saved with the final state itself: a crash cannot lose the shop's notice.
    notification = Notification(due_at=now) if order.request.notify_url else None
    return replace(
        order,
        attempts=attempts,
        status=status,
        reason=reason,
        message=message,
        updated_at=now,
        notification=notification,
    )
