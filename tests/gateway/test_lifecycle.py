"""The state machine: every outcome class, duplicates, late and contradictory reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.interface import Outcome, SupplierReply, Verdict
from gateway.lifecycle import Next, UnknownAttempt, apply_reply, exhaust, resolve, start_attempt
from gateway.order import Order, OrderRequest, OrderStatus, Reason, upstream_order_id

UID = "G01J8Z3Q7K2M4N6P8R0T2V4X6Z"
NOW = 1_795_000_000.0


def fresh() -> Order:
    request = OrderRequest(
        order_id="A-1", product="mobile.cmcc.50", account="13800138000", quantity=1, notify_url=None
    )
    return Order(uid=UID, shop="demo", request=request, face_value_cents=5000, created_at=NOW, updated_at=NOW)


def attempted(order: Order, supplier: str = "fulu") -> Order:
    number = len(order.attempts) + 1
    return start_attempt(
        order,
        supplier=supplier,
        sku="1",
        cost_cents=4930,
        upstream_order_id=upstream_order_id(UID, number),
        now=NOW,
    )


def reply(verdict: Verdict, number: int = 1, **kw: object) -> SupplierReply:
    return SupplierReply(upstream_order_id=upstream_order_id(UID, number), verdict=verdict, code="c", **kw)  # type: ignore[arg-type]


def apply(order: Order, r: SupplierReply, now: float = NOW + 1) -> tuple[Order, Next]:
    t = apply_reply(order, r, now=now, not_found_grace_seconds=60)
    return t.order, t.next


def test_attempt_is_recorded_unknown_before_sending() -> None:
    order = attempted(fresh())
    assert order.attempts[0].outcome is Outcome.UNKNOWN
    assert order.attempts[0].upstream_order_id == UID + "01"
    assert order.reason is Reason.AWAITING_SUPPLIER


@pytest.mark.parametrize(
    ("verdict", "status", "reason", "nxt"),
    [
        (Verdict.SUCCEEDED, OrderStatus.SUCCEEDED, None, Next.FINISHED),
        (Verdict.PARTIAL, OrderStatus.PARTIAL, None, Next.FINISHED),
        (Verdict.ACCOUNT_INVALID, OrderStatus.FAILED, Reason.ACCOUNT_INVALID, Next.FINISHED),
        (Verdict.FAILED, OrderStatus.PROCESSING, Reason.AWAITING_SUPPLIER, Next.TRY_NEXT_OFFER),
        (Verdict.NOT_EXECUTED, OrderStatus.PROCESSING, Reason.AWAITING_SUPPLIER, Next.TRY_NEXT_OFFER),
        (Verdict.THROTTLED, OrderStatus.PROCESSING, Reason.AWAITING_SUPPLIER, Next.TRY_NEXT_OFFER),
        (Verdict.PROCESSING, OrderStatus.PROCESSING, Reason.AWAITING_SUPPLIER, Next.AWAIT_RESULT),
        (Verdict.UNKNOWN, OrderStatus.PROCESSING, Reason.OUTCOME_UNKNOWN, Next.AWAIT_RESULT),
        (Verdict.NOT_FOUND, OrderStatus.PROCESSING, Reason.OUTCOME_UNKNOWN, Next.AWAIT_RESULT),
    ],
)
def test_each_verdict_on_an_open_attempt(
    verdict: Verdict, status: OrderStatus, reason: Reason | None, nxt: Next
) -> None:
    order, next_ = apply(attempted(fresh()), reply(verdict))
    assert (order.status, order.reason, next_) == (status, reason, nxt)
    assert order.attempts[0].replied


def test_unknown_never_leads_to_another_offer() -> None:
    for verdict in (Verdict.UNKNOWN, Verdict.PROCESSING, Verdict.NOT_FOUND):
        _, next_ = apply(attempted(fresh()), reply(verdict))
        assert next_ is not Next.TRY_NEXT_OFFER


def test_not_found_counts_as_not_executed_only_after_the_grace() -> None:
    order = attempted(fresh())
    _, early = apply(order, reply(Verdict.NOT_FOUND), now=NOW + 59)
    late_order, late = apply(order, reply(Verdict.NOT_FOUND), now=NOW + 60)
    assert early is Next.AWAIT_RESULT
    assert late is Next.TRY_NEXT_OFFER
    assert late_order.attempts[0].outcome is Outcome.NOT_EXECUTED


def test_duplicate_final_report_changes_nothing() -> None:
    done, _ = apply(attempted(fresh()), reply(Verdict.SUCCEEDED))
    again, next_ = apply(done, reply(Verdict.SUCCEEDED))
    assert next_ is Next.UNCHANGED
    assert again is done


def test_progress_after_final_is_ignored() -> None:
    done, _ = apply(attempted(fresh()), reply(Verdict.SUCCEEDED))
    for verdict in (Verdict.PROCESSING, Verdict.UNKNOWN):
        after, next_ = apply(done, reply(verdict))
        assert (after, next_) == (done, Next.UNCHANGED)


@pytest.mark.parametrize(
    ("first", "then"), [(Verdict.SUCCEEDED, Verdict.FAILED), (Verdict.FAILED, Verdict.SUCCEEDED)]
)
def test_contradiction_is_an_incident_never_a_flip(first: Verdict, then: Verdict) -> None:
    order, _ = apply(attempted(fresh()), reply(first))
    if first is Verdict.FAILED:
        order = exhaust(order, now=NOW + 1)
    status_before = order.status
    after, next_ = apply(order, reply(then))
    assert next_ is Next.CONFLICT
    assert after.status is status_before
    assert after.attempts == order.attempts
    assert len(after.incidents) == 1


def test_late_success_for_an_abandoned_attempt_is_an_incident() -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.NOT_EXECUTED))
    order = attempted(order, "other")
    order, _ = apply(order, reply(Verdict.SUCCEEDED, number=2))
    after, next_ = apply(order, reply(Verdict.SUCCEEDED, number=1))
    assert next_ is Next.CONFLICT
    assert after.incidents[0].kind == "not_executed_then_succeeded"


def test_failure_then_not_executed_is_no_conflict() -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.FAILED))
    _, next_ = apply(order, reply(Verdict.NOT_EXECUTED))
    assert next_ is Next.UNCHANGED


def test_report_for_an_attempt_the_order_never_made() -> None:
    with pytest.raises(UnknownAttempt):
        apply(attempted(fresh()), reply(Verdict.SUCCEEDED, number=2))


def test_exhaust_reason_depends_on_what_suppliers_said() -> None:
    declined, _ = apply(attempted(fresh()), reply(Verdict.FAILED))
    refused, _ = apply(attempted(fresh()), reply(Verdict.NOT_EXECUTED))
    assert exhaust(declined, now=NOW).reason is Reason.SUPPLIER_FAILED
    assert exhaust(refused, now=NOW).reason is Reason.NO_SUPPLIER_AVAILABLE
    assert exhaust(fresh(), now=NOW).status is OrderStatus.FAILED


def test_operator_resolution_then_contradicting_supplier_report() -> None:
    open_order, _ = apply(attempted(fresh()), reply(Verdict.UNKNOWN))
    resolved = resolve(open_order, status=OrderStatus.FAILED, note="checked with supplier", now=NOW + 5)
    assert resolved.reason is Reason.RESOLVED_BY_OPERATOR
    after, next_ = apply(resolved, reply(Verdict.SUCCEEDED))
    assert next_ is Next.CONFLICT
    assert after.status is OrderStatus.FAILED


def test_partial_keeps_delivered_value() -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.PARTIAL, delivered_cents=3000))
    assert order.attempts[0].delivered_cents == 3000
    assert replace(order).status is OrderStatus.PARTIAL
