"""Orders for store tests: valid, fully populated values that a test overrides field by field."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from adapters.interface import Outcome
from gateway.order import (
    Attempt,
    Delivery,
    Incident,
    Notification,
    Order,
    OrderRequest,
    OrderStatus,
    Reason,
    upstream_order_id,
)

T0 = 1_795_000_000.0


def an_order(
    uid: str = "GW00000001",
    *,
    shop: str = "shop-a",
    order_id: str | None = None,
    updated_at: float = T0,
    status: OrderStatus = OrderStatus.PROCESSING,
    reason: Reason | None = Reason.AWAITING_SUPPLIER,
    **changes: Any,
) -> Order:
    order = Order(
        uid=uid,
        shop=shop,
        request=OrderRequest(
            order_id=order_id or f"o-{uid}",
            product="cmcc-100",
            account="13800138000",
            quantity=1,
            notify_url="https://shop.example/notify",
        ),
        face_value_cents=10_000,
        created_at=T0,
        updated_at=updated_at,
        status=status,
        reason=reason,
    )
    return replace(order, **changes)


def an_attempt(uid: str, number: int, **changes: Any) -> Attempt:
    attempt = Attempt(
        supplier="fulu",
        sku="cmcc-100",
        upstream_order_id=upstream_order_id(uid, number),
        cost_cents=9_850,
        started_at=T0 + number,
    )
    return replace(attempt, **changes)


def a_full_order(uid: str = "GW00000042") -> Order:
    """Every field away from its default, including text that JSON must escape."""
    return an_order(
        uid,
        shop="商户-7",
        order_id='订单/42 "quoted"',
        updated_at=T0 + 12.345678,
        status=OrderStatus.PARTIAL,
        reason=Reason.SUPPLIER_FAILED,
        message="部分到账\nsecond line",
        request=OrderRequest(
            order_id='订单/42 "quoted"',
            product="qb-50",
            account="qq:10001",
            quantity=3,
            notify_url=None,
        ),
        face_value_cents=5_000,
        created_at=T0 + 0.125,
        attempts=(
            an_attempt(
                uid,
                1,
                outcome=Outcome.FAILED,
                code="1003",
                message="库存不足",
                duration_ms=87,
                replied=True,
            ),
            an_attempt(
                uid,
                2,
                supplier="kasuo",
                sku="KS-QB-50",
                cost_cents=14_700,
                outcome=Outcome.PARTIAL,
                code="0",
                message=None,
                duration_ms=1_204,
                supplier_order_id="KS20261122000001",
                delivered_cents=10_000,
                replied=True,
            ),
        ),
        incidents=(Incident(at=T0 + 99.5, kind="conflicting_callback", detail="succeeded after partial"),),
        notification=Notification(
            due_at=T0 + 130.0,
            attempts=2,
            history=(
                Delivery(at=T0 + 100.0, status=503, error=None, duration_ms=12),
                Delivery(at=T0 + 110.0, status=None, error="timed out", duration_ms=5000),
            ),
        ),
        version=7,
    )
