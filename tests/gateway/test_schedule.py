"""When the reconciler looks at an order next: each rule of `CheckSchedule`, on plain values."""

from __future__ import annotations

from dataclasses import replace

from adapters.interface import Outcome
from gateway.config.model import OrdersConfig
from gateway.order import Attempt, Order, OrderRequest, OrderStatus, Reason
from gateway.schedule import CheckSchedule

NOW = 1_795_000_000.0
SCHEDULE = CheckSchedule(
    OrdersConfig(reconcile_after=30.0, reconcile_every=20.0, manual_review_after=86_400.0)
)


def an_order(*attempts: Attempt, updated_at: float = NOW, reason: Reason | None = None) -> Order:
    request = OrderRequest(
        order_id="A-1", product="mobile.cmcc.50", account="13800138000", quantity=1, notify_url=None
    )
    return Order(
        uid="G01SCHEDULE",
        shop="demo",
        request=request,
        face_value_cents=5000,
        created_at=NOW,
        updated_at=updated_at,
        attempts=attempts,
        reason=reason or Reason.AWAITING_SUPPLIER,
    )


def an_attempt(outcome: Outcome, **changes: object) -> Attempt:
    attempt = Attempt(
        supplier="fulu", sku="1", upstream_order_id="G01SCHEDULE01", cost_cents=4930, started_at=NOW
    )
    return replace(attempt, outcome=outcome, **changes)  # type: ignore[arg-type]


def test_a_final_order_is_never_checked() -> None:
    order = replace(an_order(an_attempt(Outcome.SUCCEEDED)), status=OrderStatus.SUCCEEDED, reason=None)
    assert SCHEDULE.check_at(order) is None


def test_an_order_between_attempts_is_checked_once_its_router_had_time() -> None:
    assert SCHEDULE.check_at(an_order()) == NOW + 30
    failed = an_order(an_attempt(Outcome.FAILED, replied=True), updated_at=NOW + 2)
    assert SCHEDULE.check_at(failed) == NOW + 32


def test_a_submit_that_ended_unknown_is_asked_about_at_once() -> None:
    ended = an_attempt(Outcome.UNKNOWN, replied=False, submit_ended_at=NOW + 5)
    assert SCHEDULE.check_at(an_order(ended, updated_at=NOW + 5)) == NOW + 5


def test_an_accepted_or_unanswered_submit_is_asked_about_after_reconcile_after() -> None:
    accepted = an_attempt(Outcome.PROCESSING, replied=True, submit_ended_at=NOW + 1)
    on_the_wire = an_attempt(Outcome.UNKNOWN)
    assert SCHEDULE.check_at(an_order(accepted, updated_at=NOW + 1)) == NOW + 30
    assert SCHEDULE.check_at(an_order(on_the_wire)) == NOW + 30


def test_after_a_look_the_next_one_waits_a_lease() -> None:
    """A query's answer saved at NOW + 40: asked again half a sweep period later, not at once."""
    accepted = an_attempt(Outcome.PROCESSING, replied=True, submit_ended_at=NOW + 1)
    unknown = an_attempt(Outcome.UNKNOWN, replied=True, submit_ended_at=NOW + 5)
    assert SCHEDULE.lease_seconds == 10
    assert SCHEDULE.check_at(an_order(accepted, updated_at=NOW + 40)) == NOW + 50
    assert SCHEDULE.check_at(an_order(unknown, updated_at=NOW + 40)) == NOW + 50


def test_manual_review_comes_due_unless_the_order_is_already_there() -> None:
    accepted = an_attempt(Outcome.PROCESSING, replied=True)
    slow = CheckSchedule(OrdersConfig(reconcile_after=100_000.0, manual_review_after=3600.0))
    assert slow.check_at(an_order(accepted)) == NOW + 3600
    assert slow.check_at(an_order(accepted, reason=Reason.MANUAL_REVIEW)) == NOW + 100_000


def test_a_reload_moves_what_comes_due_from_then_on() -> None:
    schedule = CheckSchedule(OrdersConfig(reconcile_after=30.0))
    schedule.reconfigure(OrdersConfig(reconcile_after=5.0))
    assert schedule.check_at(an_order()) == NOW + 5
