"""The order state machine: how an order changes when an attempt starts, a supplier answers, or offers end.

Pure functions over frozen values; no I/O. Every rule of DESIGN.md's outcome table is decided here,
and a final state never changes: contradictions become incidents. Each change checks its own
precondition on the order it is given, so a caller that retries it on a fresher copy (or a second
worker doing the same) can never add a second attempt or end an order that has one in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final, assert_never

from adapters.interface import Outcome, SupplierReply, Verdict
from gateway.order import MAX_ATTEMPTS_PER_ORDER, Attempt, Incident, Notification, Order, OrderStatus, Reason

FINAL_OUTCOMES = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL, Outcome.FAILED, Outcome.NOT_EXECUTED})
DELIVERED = frozenset({Outcome.SUCCEEDED, Outcome.PARTIAL})
# An attempt in one of these certainly charged nothing.
UNCHARGED: Final = frozenset({Outcome.FAILED, Outcome.NOT_EXECUTED})
OPEN_OUTCOMES: Final = frozenset({Outcome.PROCESSING, Outcome.UNKNOWN})

MAX_INCIDENTS: Final = 20
MAX_TEXT: Final = 300  # characters of supplier-chosen text kept in an incident or shown to a shop

# What a shop reads when the supplier's own words are not to be shown (they quote raw bytes or
# our own transport errors, which name internal hosts): one fixed sentence per outcome.
UNKNOWN_MESSAGE: Final = "the supplier's answer is not known yet; the gateway is checking with the supplier"
NOT_SENT_MESSAGE: Final = "the supplier could not be reached; nothing was charged there"


class Source(StrEnum):
    """Where a report about an attempt came from: it decides how far the report is trusted."""

    SUBMIT = "submit"  # the supplier's reply to our own submit
    QUERY = "query"  # the supplier's answer to our status query
    # The supplier called us. A claimed failure is confirmed by a query before anything is tried
    # elsewhere: fulu signs sorted characters, which a rearranged body can still match.
    CALLBACK = "callback"
    # A callback whose signature does not cover its result (juhe signs only the ids): any final
    # claim in it, success included, could be a replay with the status changed. A query decides.
    UNSIGNED_CALLBACK = "unsigned_callback"


class Next(StrEnum):
    """What the caller does after a transition."""

    FINISHED = "finished"  # the order just became final: notify
    TRY_NEXT_OFFER = "try_next_offer"  # the attempt certainly did not charge: route on
    AWAIT_RESULT = "await_result"  # accepted or unknown: wait for a callback or query, never fail over
    CONFIRM = "confirm"  # a callback claimed a failure: query the supplier before believing it
    UNCHANGED = "unchanged"  # a duplicate or stale report: nothing to do
    CONFLICT = "conflict"  # a report that contradicts what is known: stored as an incident only


@dataclass(frozen=True, slots=True)
class Transition:
    order: Order
    next: Next


class UnknownAttempt(LookupError):
    """A report about an upstream id this order never used."""


def certainly_uncharged(order: Order) -> bool:
    """No attempt of this processing order can have charged: a new attempt (or failing it) is safe."""
    return not order.status.final and all(a.outcome in UNCHARGED for a in order.attempts)


def start_attempt(
    order: Order,
    *,
    supplier: str,
    sku: str,
    cost_cents: int,
    upstream_order_id: str,
    now: float,
    expected_attempts: int | None = None,
) -> Order | None:
    """The order with a new attempt, or None when one may not start.

    `expected_attempts` is how many attempts the caller saw when it chose the offer: if another
    worker has started one since, the choice is stale and nothing changes.
    """
    if not certainly_uncharged(order):
        return None
    if expected_attempts is not None and len(order.attempts) != expected_attempts:
        return None
    attempt = Attempt(
        supplier=supplier, sku=sku, upstream_order_id=upstream_order_id, cost_cents=cost_cents, started_at=now
    )
    return replace(
        order,
        attempts=(*order.attempts, attempt),
        reason=Reason.AWAITING_SUPPLIER,
        updated_at=now,
        message=None,
        held_at=None,
    )


def apply_reply(
    order: Order,
    reply: SupplierReply,
    *,
    source: Source,
    now: float,
    not_found_grace_seconds: float,
    duration_ms: int | None = None,
    supplier: str | None = None,
) -> Transition:
    """Apply one supplier report (submit reply, query answer or callback) about one attempt.

    `supplier`: who sent the report (a callback's or query's); an attempt sent to another supplier
    is unknown to it, as if the id were unknown (`UnknownAttempt`).
    """
    index = _attempt_index(order, reply.upstream_order_id)
    attempt = order.attempts[index]
    if supplier is not None and attempt.supplier != supplier:
        raise UnknownAttempt(reply.upstream_order_id)
    outcome = _effective_outcome(attempt, reply, source, now, not_found_grace_seconds)

    if attempt.outcome in FINAL_OUTCOMES:
        return _late_report(order, attempt, reply, outcome, now)
    if order.status.final:
        # An operator settled the order while this attempt was still open.
        if outcome in OPEN_OUTCOMES or _unconfirmed(outcome, source):
            return Transition(order, Next.UNCHANGED)
        settled = _settle_open_attempt(order, index, attempt, reply, outcome, source, now, duration_ms)
        if (outcome in DELIVERED) != (order.status in (OrderStatus.SUCCEEDED, OrderStatus.PARTIAL)):
            return _conflict(settled, now, f"{outcome.value}_after_{order.status.value}", attempt, reply)
        return Transition(settled, Next.UNCHANGED)

    if reply.verdict is Verdict.NOT_FOUND and outcome is Outcome.UNKNOWN and _acknowledged(attempt):
        # The supplier had this order; "no such order" now is a lagging replica or a capped
        # reply. Failing over would charge twice: keep asking, and tell operators.
        return _conflict(order, now, "not_found_after_acknowledged", attempt, reply)
    if source is not Source.SUBMIT and outcome is Outcome.UNKNOWN:
        # A query or callback that settles nothing (unreadable, or "not found" within the grace)
        # leaves the attempt as it was: it is asked again at the next sweep.
        return Transition(order, Next.UNCHANGED)
    if _unconfirmed(outcome, source):
        return _await_confirmation(order, index, attempt, reply, now)

    updated = _updated_attempt(attempt, reply, outcome, source, now, duration_ms)
    attempts = _with_attempt(order, index, updated)
    is_current = index == len(order.attempts) - 1
    message = updated.message
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


def exhaust(
    order: Order, *, now: float, reason: Reason | None = None, expected_attempts: int | None = None
) -> Order | None:
    """No offer is left to try: the order fails, `supplier_failed` if a supplier declined it.

    None when the order may not fail now: an attempt may have charged, or (with
    `expected_attempts`) another worker started one since the caller looked.
    """
    if not certainly_uncharged(order):
        return None
    if expected_attempts is not None and len(order.attempts) != expected_attempts:
        return None
    if reason is None:
        declined = any(a.outcome is Outcome.FAILED for a in order.attempts)
        reason = Reason.SUPPLIER_FAILED if declined else Reason.NO_SUPPLIER_AVAILABLE
    message = order.message or (
        "no supplier could take the order" if reason is Reason.NO_SUPPLIER_AVAILABLE else None
    )
    return _finish(
        order, attempts=order.attempts, status=OrderStatus.FAILED, reason=reason, message=message, now=now
    )


def hold(order: Order, *, now: float, expected_attempts: int | None = None) -> Order | None:
    """No offer is left to try and the operator asked to hold such orders (压单): it stays processing.

    Same preconditions as `exhaust`; the shop is told nothing until the order is final.
    """
    if not certainly_uncharged(order):
        return None
    if expected_attempts is not None and len(order.attempts) != expected_attempts:
        return None
    if order.reason is Reason.HELD:
        return None
    return replace(order, reason=Reason.HELD, held_at=now, updated_at=now)


def held_until(order: Order, hold_for_seconds: float) -> float | None:
    """When a held order fails if nobody acts; None for an order that is not held."""
    if order.status.final or order.reason is not Reason.HELD:
        return None
    return (order.held_at if order.held_at is not None else order.updated_at) + hold_for_seconds


def end_hold(order: Order, *, now: float, hold_for_seconds: float, expected_attempts: int) -> Order | None:
    """A held order whose `hold_for` has passed fails as `exhaust` decides; None if it is not due.

    Checked on the order given: one an operator resubmitted (or held again) since is left alone.
    """
    until = held_until(order, hold_for_seconds)
    if until is None or now < until:
        return None
    return exhaust(order, now=now, expected_attempts=expected_attempts)


class ResubmitRefused(StrEnum):
    """Why `resubmit` started nothing."""

    FINAL = "final"  # the order is final: final states never change
    UNSAFE = "unsafe"  # an attempt is open or unknown: it may have charged
    STALE = "stale"  # another worker started an attempt since the caller looked
    EXHAUSTED = "exhausted"  # the order used every attempt number an upstream order id can carry


def resubmit_refusal(order: Order, *, expected_attempts: int | None = None) -> ResubmitRefused | None:
    """Why an operator's resubmit may not start an attempt on `order` now; None when it may."""
    if order.status.final:
        return ResubmitRefused.FINAL
    if not certainly_uncharged(order):
        return ResubmitRefused.UNSAFE
    if expected_attempts is not None and len(order.attempts) != expected_attempts:
        return ResubmitRefused.STALE
    if len(order.attempts) >= MAX_ATTEMPTS_PER_ORDER:
        # A 100th attempt's id would not name its order: its callbacks and answers would be lost.
        return ResubmitRefused.EXHAUSTED
    return None


def resubmit(
    order: Order,
    *,
    supplier: str,
    sku: str,
    cost_cents: int,
    upstream_order_id: str,
    now: float,
    expected_attempts: int,
    note: str,
) -> Order | None:
    """An operator starts a new attempt (补单): only while every attempt certainly charged nothing.

    None when one may not start (see `resubmit_refusal`). Not bounded by `orders.max_attempts`:
    an operator asked for it. The operator's note is kept as an incident, as for `resolve`.
    """
    if resubmit_refusal(order, expected_attempts=expected_attempts) is not None:
        return None
    started = start_attempt(
        order,
        supplier=supplier,
        sku=sku,
        cost_cents=cost_cents,
        upstream_order_id=upstream_order_id,
        now=now,
        expected_attempts=expected_attempts,
    )
    if started is None:
        return None
    incident = Incident(
        at=now, kind="resubmitted_by_operator", detail=note, upstream_order_id=upstream_order_id
    )
    return replace(started, incidents=_with_incident(started.incidents, incident))


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


def submit_lost(order: Order, upstream_order_id: str, *, now: float) -> Order:
    """A submit whose end nobody saw (the process died, or its task did): its outcome is unknown.

    Its end stays unrecorded, so "not found" counts from one grace after it started (see
    `_effective_outcome`), never from now: with several instances, the one recovering may run
    while another still has that submit on the wire.
    """
    index = _attempt_index(order, upstream_order_id)
    attempt = order.attempts[index]
    if (
        attempt.outcome is not Outcome.UNKNOWN
        or attempt.submit_ended_at is not None
        or order.reason in (Reason.OUTCOME_UNKNOWN, Reason.MANUAL_REVIEW)
    ):
        return order
    return _unknown_now(order, index, attempt, now)


def public_message(reply: SupplierReply) -> str | None:
    """What a shop may read of a reply: the supplier's own words, or a fixed sentence.

    A reply with a code carries the supplier's message field. One without a code that is unknown
    or not executed was written by the gateway (a quote of unreadable bytes, a transport error
    naming a host and port): the shop gets a fixed sentence and operators the detail.
    """
    if reply.code is None and reply.outcome is Outcome.UNKNOWN:
        return UNKNOWN_MESSAGE
    if reply.code is None and reply.outcome is Outcome.NOT_EXECUTED:
        return NOT_SENT_MESSAGE
    return _bounded(reply.message)


def _bounded(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT:
        return text
    return text[: MAX_TEXT - 1] + "…"


def _attempt_index(order: Order, upstream_order_id: str) -> int:
    for index in range(len(order.attempts) - 1, -1, -1):
        if order.attempts[index].upstream_order_id == upstream_order_id:
            return index
    raise UnknownAttempt(upstream_order_id)


def _acknowledged(attempt: Attempt) -> bool:
    return (
        attempt.acknowledged or attempt.outcome is Outcome.PROCESSING or attempt.supplier_order_id is not None
    )


def _effective_outcome(
    attempt: Attempt, reply: SupplierReply, source: Source, now: float, grace: float
) -> Outcome:
    if reply.verdict is not Verdict.NOT_FOUND:
        return reply.outcome
    # "Not found" proves nothing was charged only for a submit the supplier never acknowledged,
    # and only once it has had time to record it. A submit whose end nobody saw ended at the
    # latest one timeout after it started, and the grace is never shorter than a timeout.
    if source is Source.SUBMIT or attempt.outcome is not Outcome.UNKNOWN or _acknowledged(attempt):
        return Outcome.UNKNOWN
    ended = attempt.submit_ended_at if attempt.submit_ended_at is not None else attempt.started_at + grace
    return Outcome.NOT_EXECUTED if now - ended >= grace else Outcome.UNKNOWN


def _unconfirmed(outcome: Outcome, source: Source) -> bool:
    """A callback's claim that only a query may make true."""
    match source:
        case Source.CALLBACK:
            return outcome in UNCHARGED
        case Source.UNSIGNED_CALLBACK:
            return outcome not in OPEN_OUTCOMES
        case Source.SUBMIT | Source.QUERY:
            return False
        case _:
            assert_never(source)


def _await_confirmation(
    order: Order, index: int, attempt: Attempt, reply: SupplierReply, now: float
) -> Transition:
    """A callback claims a result a query must confirm: until one agrees the attempt is unknown."""
    claim = f"callback reported {reply.verdict.value} (code {reply.code}): {_bounded(reply.message)!r}"
    updated = replace(attempt, outcome=Outcome.UNKNOWN, acknowledged=True, detail=claim)
    return Transition(_unknown_now(order, index, updated, now), Next.CONFIRM)


def _unknown_now(order: Order, index: int, attempt: Attempt, now: float) -> Order:
    """The order with `attempt` in place of its `index`th, waiting for the supplier's word."""
    reason = Reason.MANUAL_REVIEW if order.reason is Reason.MANUAL_REVIEW else Reason.OUTCOME_UNKNOWN
    return replace(order, attempts=_with_attempt(order, index, attempt), reason=reason, updated_at=now)


def _with_attempt(order: Order, index: int, attempt: Attempt) -> tuple[Attempt, ...]:
    return (*order.attempts[:index], attempt, *order.attempts[index + 1 :])


def _updated_attempt(
    attempt: Attempt,
    reply: SupplierReply,
    outcome: Outcome,
    source: Source,
    now: float,
    duration_ms: int | None,
) -> Attempt:
    message = public_message(reply)
    detail = reply.message if message != reply.message else None
    acknowledged = (
        attempt.acknowledged
        or source in (Source.CALLBACK, Source.UNSIGNED_CALLBACK)
        or outcome is Outcome.PROCESSING
        or reply.supplier_order_id is not None
        # A code of its own in reply to our submit (a duplicate-id refusal, an unlisted code):
        # the supplier read the order, so a later "not found" proves nothing.
        or (source is Source.SUBMIT and reply.code is not None and outcome is Outcome.UNKNOWN)
    )
    return replace(
        attempt,
        outcome=outcome,
        code=reply.code if reply.code is not None else attempt.code,
        message=message if message is not None else attempt.message,
        detail=detail if detail is not None else attempt.detail,
        duration_ms=duration_ms if duration_ms is not None else attempt.duration_ms,
        supplier_order_id=reply.supplier_order_id or attempt.supplier_order_id,
        delivered_cents=reply.delivered_cents
        if reply.delivered_cents is not None
        else attempt.delivered_cents,
        cost_cents=reply.cost_cents if reply.cost_cents is not None else attempt.cost_cents,
        replied=True,
        acknowledged=acknowledged,
        submit_ended_at=now if source is Source.SUBMIT else attempt.submit_ended_at,
    )


def _settle_open_attempt(
    order: Order,
    index: int,
    attempt: Attempt,
    reply: SupplierReply,
    outcome: Outcome,
    source: Source,
    now: float,
    duration_ms: int | None,
) -> Order:
    updated = _updated_attempt(attempt, reply, outcome, source, now, duration_ms)
    if updated == attempt:
        return order
    return replace(order, attempts=_with_attempt(order, index, updated))


def _late_report(
    order: Order, attempt: Attempt, reply: SupplierReply, outcome: Outcome, now: float
) -> Transition:
    """A report about an attempt whose outcome is already final."""
    if outcome in OPEN_OUTCOMES:
        return Transition(order, Next.UNCHANGED)  # progress after a final result means nothing
    if outcome == attempt.outcome or {outcome, attempt.outcome} <= UNCHARGED:
        return Transition(order, Next.UNCHANGED)  # a duplicate, or failure either way: nothing was charged
    return _conflict(order, now, f"{attempt.outcome.value}_then_{outcome.value}", attempt, reply)


def _conflict(order: Order, now: float, kind: str, attempt: Attempt, reply: SupplierReply) -> Transition:
    detail = (
        f"{attempt.supplier} {attempt.upstream_order_id}: reported {reply.verdict.value}"
        f" (code {_bounded(reply.code)}, {_bounded(reply.message)!r}) after the attempt was"
        f" {attempt.outcome.value} and the order {order.status.value}"
    )
    incident = Incident(at=now, kind=kind, detail=detail, upstream_order_id=attempt.upstream_order_id)
    return Transition(
        replace(order, incidents=_with_incident(order.incidents, incident), updated_at=now), Next.CONFLICT
    )


def _with_incident(incidents: tuple[Incident, ...], incident: Incident) -> tuple[Incident, ...]:
    """Repeats of a kind about one attempt are counted, not appended; the list itself is capped."""
    for index, earlier in enumerate(incidents):
        if earlier.kind == incident.kind and earlier.upstream_order_id == incident.upstream_order_id:
            counted = replace(incident, repeats=earlier.repeats + 1)
            return (*incidents[:index], counted, *incidents[index + 1 :])
    if len(incidents) < MAX_INCIDENTS - 1:
        return (*incidents, incident)
    # The last slot counts everything past the cap, so operators still see that more came.
    overflow = Incident(at=incident.at, kind="more_incidents", detail="reports past the cap, not kept")
    if incidents[-1].kind == overflow.kind:
        return (*incidents[:-1], replace(overflow, repeats=incidents[-1].repeats + 1))
    return (*incidents, overflow)


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
