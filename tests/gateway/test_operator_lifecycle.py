"""Operator actions in the order state machine (CONTRACT.md §10): hold, the hold's end, resubmit.

The money rule as a property, on top of `test_lifecycle_properties.py`'s machine: besides its
routers, supplier reports, crashes and queries, orders are held when offers run out, held orders
come to the end of their hold, and operators resubmit from views that may be stale, to a supplier
of their choice. A resubmit never starts an attempt while one may have charged, and a hold never
ends an order that one may have charged.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st
from hypothesis.stateful import rule

from adapters.interface import Outcome
from gateway.config.model import OrdersConfig
from gateway.lifecycle import (
    ResubmitRefused,
    end_hold,
    held_until,
    hold,
    resubmit,
    resubmit_refusal,
    start_attempt,
)
from gateway.order import MAX_ATTEMPTS_PER_ORDER, Order, OrderRequest, OrderStatus, Reason
from gateway.schedule import CheckSchedule
from tests.gateway.test_lifecycle_properties import MAY_CHARGE, SUPPLIERS, T0, LifecycleMachine, ModelAttempt

HOLD_FOR = 600.0


class OperatorMachine(LifecycleMachine):
    def _nothing_may_have_charged(self) -> bool:
        return all(m.truth not in MAY_CHARGE and not m.in_flight for m in self.model)

    @rule(stale=st.booleans())
    def offers_run_out_and_it_is_held(self, stale: bool) -> None:
        seen = len(self.order.attempts) - (1 if stale and self.order.attempts else 0)
        held = hold(self.order, now=self.now, expected_attempts=seen)
        if held is not None:
            assert self._nothing_may_have_charged(), self.model
            assert (held.status, held.reason, held.held_at) == (OrderStatus.PROCESSING, Reason.HELD, self.now)
            self.order = held

    @rule(stale=st.booleans())
    def the_hold_ends(self, stale: bool) -> None:
        seen = len(self.order.attempts) - (1 if stale and self.order.attempts else 0)
        failed = end_hold(self.order, now=self.now, hold_for_seconds=HOLD_FOR, expected_attempts=seen)
        if failed is not None:
            assert self._nothing_may_have_charged(), self.model
            assert failed.status is OrderStatus.FAILED
            self.order = failed

    @rule(stale=st.booleans(), supplier=st.sampled_from(SUPPLIERS))
    def an_operator_resubmits(self, stale: bool, supplier: str) -> None:
        """From a view that may be stale, to any supplier, tried before or not, past max_attempts."""
        seen = len(self.order.attempts) - (1 if stale and self.order.attempts else 0)
        refusal = resubmit_refusal(self.order, expected_attempts=seen)
        started = resubmit(
            self.order,
            supplier=supplier,
            sku="1",
            cost_cents=4930,
            upstream_order_id=self._id(len(self.order.attempts)),
            now=self.now,
            expected_attempts=seen,
            note="li.wei: channel back",
        )
        assert (started is None) == (refusal is not None)
        if started is None:
            return
        assert self._nothing_may_have_charged(), self.model
        assert started.reason is Reason.AWAITING_SUPPLIER
        assert started.held_at is None
        assert started.incidents[-1].kind == "resubmitted_by_operator"
        self.order = started
        self.model.append(ModelAttempt())


TestOperatorActions = OperatorMachine.TestCase
TestOperatorActions.settings = LifecycleMachine.TestCase.settings


def _order() -> Order:
    request = OrderRequest(
        order_id="H-1", product="mobile.cmcc.50", account="13800138000", quantity=1, notify_url="http://x/h"
    )
    return Order(
        uid="G01HELD", shop="demo", request=request, face_value_cents=5000, created_at=T0, updated_at=T0
    )


def _failed_attempt(order: Order) -> Order:
    started = start_attempt(
        order, supplier="a", sku="1", cost_cents=1, upstream_order_id="G01HELD01", now=T0, expected_attempts=0
    )
    assert started is not None
    return replace(started, attempts=(replace(started.attempts[0], outcome=Outcome.FAILED),))


def test_a_held_order_tells_the_shop_nothing_and_comes_due_at_the_hold_end() -> None:
    order = _failed_attempt(_order())
    held = hold(order, now=T0 + 5, expected_attempts=1)
    assert held is not None
    assert held.notification is None
    assert held_until(held, HOLD_FOR) == T0 + 5 + HOLD_FOR
    schedule = CheckSchedule(OrdersConfig(hold_for=HOLD_FOR))
    assert schedule.check_at(held) == T0 + 5 + HOLD_FOR
    assert end_hold(held, now=T0 + 4 + HOLD_FOR, hold_for_seconds=HOLD_FOR, expected_attempts=1) is None
    failed = end_hold(held, now=T0 + 5 + HOLD_FOR, hold_for_seconds=HOLD_FOR, expected_attempts=1)
    assert failed is not None
    assert (failed.status, failed.reason) == (OrderStatus.FAILED, Reason.SUPPLIER_FAILED)
    assert failed.notification is not None  # told once final


def test_resubmit_is_refused_on_a_final_order_and_on_a_stale_view() -> None:
    order = _failed_attempt(_order())
    assert resubmit_refusal(order, expected_attempts=0) is ResubmitRefused.STALE
    assert resubmit_refusal(order, expected_attempts=1) is None
    unsent = start_attempt(
        order, supplier="b", sku="1", cost_cents=1, upstream_order_id="G01HELD02", now=T0, expected_attempts=1
    )
    assert unsent is not None
    assert resubmit_refusal(unsent) is ResubmitRefused.UNSAFE
    failed = hold(order, now=T0)
    assert failed is not None
    ended = end_hold(failed, now=T0 + HOLD_FOR, hold_for_seconds=HOLD_FOR, expected_attempts=1)
    assert ended is not None
    assert resubmit_refusal(ended) is ResubmitRefused.FINAL


def test_resubmit_stops_at_the_last_attempt_number_an_upstream_id_can_carry() -> None:
    """Upstream ids number attempts in two digits: a 100th attempt's id would not name its order."""
    one = _failed_attempt(_order())
    order = replace(one, attempts=one.attempts * MAX_ATTEMPTS_PER_ORDER)
    assert len(order.attempts) == MAX_ATTEMPTS_PER_ORDER
    assert resubmit_refusal(order) is ResubmitRefused.EXHAUSTED
    assert (
        resubmit(
            order,
            supplier="a",
            sku="1",
            cost_cents=1,
            upstream_order_id="G01HELD100",
            now=T0,
            expected_attempts=MAX_ATTEMPTS_PER_ORDER,
            note="again",
        )
        is None
    )
