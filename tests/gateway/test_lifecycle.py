"""The state machine: every outcome class, duplicates, late and contradictory reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.interface import Outcome, SupplierReply, Verdict
from gateway.lifecycle import (
    MAX_INCIDENTS,
    NOT_SENT_MESSAGE,
    UNKNOWN_MESSAGE,
    Next,
    Source,
    Transition,
    UnknownAttempt,
    apply_reply,
    certainly_uncharged,
    exhaust,
    resolve,
    start_attempt,
    submit_lost,
)
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
    started = start_attempt(
        order,
        supplier=supplier,
        sku="1",
        cost_cents=4930,
        upstream_order_id=upstream_order_id(UID, number),
        now=NOW,
    )
    assert started is not None
    return started


def reply(verdict: Verdict, number: int = 1, **kw: object) -> SupplierReply:
    fields: dict[str, object] = {"code": "c", **kw}
    return SupplierReply(upstream_order_id=upstream_order_id(UID, number), verdict=verdict, **fields)  # type: ignore[arg-type]


def apply(
    order: Order, r: SupplierReply, now: float = NOW + 1, source: Source = Source.SUBMIT
) -> tuple[Order, Next]:
    t = apply_reply(order, r, source=source, now=now, not_found_grace_seconds=60)
    return t.order, t.next


def failed_over(order: Order) -> Order:
    done = exhaust(order, now=NOW + 1)
    assert done is not None
    return done


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


def timed_out(order: Order, at: float = NOW + 5) -> Order:
    """The submit ended at `at` with no reply: unknown, never acknowledged."""
    lost = SupplierReply(
        upstream_order_id=upstream_order_id(UID, 1), verdict=Verdict.UNKNOWN, message="timeout"
    )
    after, _ = apply(order, lost, now=at)
    return after


def not_found(number: int = 1) -> SupplierReply:
    return reply(Verdict.NOT_FOUND, number, message="no such order")


def test_not_found_counts_as_not_executed_only_after_the_grace_from_the_submit_end() -> None:
    order = timed_out(attempted(fresh()), at=NOW + 5)
    _, early = apply(order, not_found(), now=NOW + 64, source=Source.QUERY)
    late_order, late = apply(order, not_found(), now=NOW + 65, source=Source.QUERY)
    assert early is Next.UNCHANGED
    assert late is Next.TRY_NEXT_OFFER
    assert late_order.attempts[0].outcome is Outcome.NOT_EXECUTED


def test_a_submit_whose_end_nobody_saw_waits_a_timeout_more() -> None:
    # Started at NOW, its end never recorded: it may have left as late as one timeout (<= grace) after.
    order = attempted(fresh())
    _, early = apply(order, not_found(), now=NOW + 119, source=Source.QUERY)
    _, late = apply(order, not_found(), now=NOW + 120, source=Source.QUERY)
    assert (early, late) == (Next.UNCHANGED, Next.TRY_NEXT_OFFER)
    # Recovery says the outcome is unknown, but not when the submit ended: another instance may
    # still have it on the wire, so the grace keeps counting from one grace after the start.
    recovered = submit_lost(order, upstream_order_id(UID, 1), now=NOW + 1)
    assert recovered.reason is Reason.OUTCOME_UNKNOWN
    assert recovered.attempts[0].submit_ended_at is None
    _, soon_after = apply(recovered, not_found(), now=NOW + 62, source=Source.QUERY)
    assert soon_after is Next.UNCHANGED
    assert submit_lost(recovered, upstream_order_id(UID, 1), now=NOW + 2) is recovered


@pytest.mark.parametrize(
    "acknowledgement",
    [
        pytest.param(reply(Verdict.PROCESSING), id="accepted"),
        pytest.param(reply(Verdict.UNKNOWN, code="3007", message="duplicate order id"), id="duplicate-id"),
        pytest.param(reply(Verdict.UNKNOWN, supplier_order_id="F1"), id="supplier-order-id"),
    ],
)
def test_not_found_after_the_supplier_acknowledged_never_fails_over(acknowledgement: SupplierReply) -> None:
    order, _ = apply(attempted(fresh()), acknowledgement, now=NOW + 1)
    for query_at in (NOW + 1000, NOW + 5000):
        order, next_ = apply(order, not_found(), now=query_at, source=Source.QUERY)
        assert next_ is Next.CONFLICT
        assert order.attempts[0].outcome in (Outcome.PROCESSING, Outcome.UNKNOWN)
        assert not certainly_uncharged(order)
    # One incident however often a lagging replica says it.
    assert [(i.kind, i.repeats) for i in order.incidents] == [("not_found_after_acknowledged", 2)]


def test_a_callback_claiming_failure_is_confirmed_by_a_query_first() -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.PROCESSING))
    claimed, next_ = apply(order, reply(Verdict.FAILED, message="forged"), source=Source.CALLBACK)
    assert next_ is Next.CONFIRM
    assert claimed.attempts[0].outcome is Outcome.UNKNOWN
    assert claimed.status is OrderStatus.PROCESSING
    assert not certainly_uncharged(claimed)
    # The query says it succeeded after all: no failover ever happened.
    truth, next_ = apply(claimed, reply(Verdict.SUCCEEDED), source=Source.QUERY)
    assert (truth.status, next_) == (OrderStatus.SUCCEEDED, Next.FINISHED)


def test_a_failure_confirmed_by_query_fails_over() -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.PROCESSING))
    claimed, _ = apply(order, reply(Verdict.FAILED), source=Source.CALLBACK)
    confirmed, next_ = apply(claimed, reply(Verdict.FAILED), source=Source.QUERY)
    assert next_ is Next.TRY_NEXT_OFFER
    assert certainly_uncharged(confirmed)


def test_a_callback_failure_then_not_found_is_no_proof() -> None:
    claimed, _ = apply(attempted(fresh()), reply(Verdict.FAILED), source=Source.CALLBACK)
    _, next_ = apply(claimed, not_found(), now=NOW + 10_000, source=Source.QUERY)
    assert next_ is Next.CONFLICT


@pytest.mark.parametrize(
    "verdict", [Verdict.SUCCEEDED, Verdict.PARTIAL, Verdict.FAILED, Verdict.ACCOUNT_INVALID]
)
def test_every_result_of_an_unsigned_callback_is_confirmed_first(verdict: Verdict) -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.PROCESSING))
    claimed, next_ = apply(order, reply(verdict, delivered_cents=100), source=Source.UNSIGNED_CALLBACK)
    assert next_ is Next.CONFIRM
    assert (claimed.status, claimed.attempts[0].outcome) == (OrderStatus.PROCESSING, Outcome.UNKNOWN)


def test_success_by_callback_is_applied_at_once() -> None:
    order, next_ = apply(attempted(fresh()), reply(Verdict.SUCCEEDED), source=Source.CALLBACK)
    assert (order.status, next_) == (OrderStatus.SUCCEEDED, Next.FINISHED)


def test_a_query_that_says_nothing_changes_nothing() -> None:
    order, _ = apply(attempted(fresh()), reply(Verdict.PROCESSING))
    after, next_ = apply(order, reply(Verdict.UNKNOWN, code=None, message="HTTP 502"), source=Source.QUERY)
    assert (after, next_) == (order, Next.UNCHANGED)


def test_no_second_attempt_while_one_may_have_charged() -> None:
    order = timed_out(attempted(fresh()))
    assert start_attempt(order, supplier="b", sku="1", cost_cents=1, upstream_order_id="x", now=NOW) is None
    assert exhaust(order, now=NOW) is None
    declined, _ = apply(attempted(fresh()), reply(Verdict.FAILED))
    # A router that chose its offer before another one started an attempt loses.
    second = attempted(declined, "b")
    assert start_attempt(second, supplier="c", sku="1", cost_cents=1, upstream_order_id="y", now=NOW) is None
    stale = start_attempt(
        declined, supplier="c", sku="1", cost_cents=1, upstream_order_id="y", now=NOW, expected_attempts=0
    )
    assert stale is None
    assert exhaust(declined, now=NOW, expected_attempts=0) is None


def test_replayed_contradictions_do_not_grow_the_order() -> None:
    done, _ = apply(attempted(fresh()), reply(Verdict.SUCCEEDED))
    order = done
    for n in range(50):
        order, next_ = apply(order, reply(Verdict.FAILED, message="x" * 10_000 + str(n)), source=Source.QUERY)
        assert next_ is Next.CONFLICT
    assert len(order.incidents) == 1
    assert order.incidents[0].repeats == 50
    assert len(order.incidents[0].detail) < 1000


def test_incidents_are_capped() -> None:
    order = fresh()
    attempts = MAX_INCIDENTS + 5
    for number in range(1, attempts + 1):
        order = attempted(order, f"s{number}")
        order, _ = apply(order, reply(Verdict.NOT_EXECUTED, number))
    order, _ = apply(attempted(order, "last"), reply(Verdict.SUCCEEDED, attempts + 1))
    for number in range(1, attempts + 1):  # every abandoned attempt claims success afterwards
        order, next_ = apply(order, reply(Verdict.SUCCEEDED, number), source=Source.QUERY)
        assert next_ is Next.CONFLICT
    assert len(order.incidents) == MAX_INCIDENTS
    assert order.incidents[-1].kind == "more_incidents"
    assert order.incidents[-1].repeats == 6


@pytest.mark.parametrize(
    ("r", "shown"),
    [
        pytest.param(
            SupplierReply(
                upstream_order_id=UID + "01",
                verdict=Verdict.NOT_EXECUTED,
                message="not sent: ClientConnectorError: Cannot connect to host 10.0.0.7:9101",
            ),
            NOT_SENT_MESSAGE,
            id="transport-not-sent",
        ),
        pytest.param(
            SupplierReply(
                upstream_order_id=UID + "01",
                verdict=Verdict.UNKNOWN,
                message="HTTP 502: <html>upstream</html>",
            ),
            UNKNOWN_MESSAGE,
            id="garbage",
        ),
        pytest.param(reply(Verdict.FAILED, message="库存不足"), "库存不足", id="supplier-words"),
        pytest.param(reply(Verdict.FAILED, message="长" * 1000), "长" * 299 + "…", id="bounded"),
    ],
)
def test_shops_read_the_supplier_words_or_a_fixed_sentence(r: SupplierReply, shown: str) -> None:
    order, _ = apply(attempted(fresh()), r)
    assert order.attempts[0].message == shown
    if shown != r.message:
        assert order.attempts[0].detail == r.message  # operators still see what happened


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
        order = failed_over(order)
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


def test_a_report_from_a_supplier_the_attempt_never_went_to_is_unknown() -> None:
    order = attempted(fresh(), supplier="fulu")
    callback = reply(Verdict.SUCCEEDED)

    def report(supplier: str | None) -> Transition:
        return apply_reply(
            order,
            callback,
            source=Source.CALLBACK,
            now=NOW + 1,
            not_found_grace_seconds=60,
            supplier=supplier,
        )

    with pytest.raises(UnknownAttempt):
        report("juhe")
    assert report("fulu") == report(None)


def test_exhaust_reason_depends_on_what_suppliers_said() -> None:
    declined, _ = apply(attempted(fresh()), reply(Verdict.FAILED))
    refused, _ = apply(attempted(fresh()), reply(Verdict.NOT_EXECUTED))
    assert failed_over(declined).reason is Reason.SUPPLIER_FAILED
    assert failed_over(refused).reason is Reason.NO_SUPPLIER_AVAILABLE
    assert failed_over(fresh()).status is OrderStatus.FAILED


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
