"""What shops and operators see of an order: the order JSON of CONTRACT.md §1 and the operator's fuller view.

One serialisation of an attempt serves both: the operator's adds fields to the shop's, never
renames or recomputes them. Nothing here is stored; the stored form is `order.py`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.money import format_money
from gateway.order import Attempt, Notification, Order, OrderStatus


def iso_time(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_view(order: Order) -> dict[str, Any]:
    """The order JSON of CONTRACT.md §1."""
    request = order.request
    deciding = order.deciding_attempt
    delivered: int | None = None
    if order.status is OrderStatus.SUCCEEDED:
        delivered = order.face_value_cents * request.quantity
    elif order.status is OrderStatus.PARTIAL and deciding is not None:
        delivered = deciding.delivered_cents
    view: dict[str, Any] = {
        "order_id": request.order_id,
        "product": request.product,
        "account": request.account,
        "quantity": request.quantity,
        "status": order.status.value,
        "reason": order.reason.value if order.reason is not None else None,
        "message": order.message,
        "supplier": deciding.supplier if deciding else None,
        "supplier_order_id": deciding.supplier_order_id if deciding else None,
        "cost": format_money(deciding.cost_cents) if deciding else None,
        "delivered_value": format_money(delivered) if delivered is not None else None,
        "created_at": iso_time(order.created_at),
        "updated_at": iso_time(order.updated_at),
        "attempts": [public_attempt(a) for a in order.attempts],
    }
    # Only mobile_cn orders carry it (CONTRACT.md §7): as stored at intake, never looked up here.
    if order.account_info is not None:
        view["account_info"] = order.account_info.as_json()
    return view


def public_attempt(attempt: Attempt) -> dict[str, Any]:
    """One attempt as a shop sees it: the supplier's words or a fixed sentence, never an internal detail."""
    return {
        "supplier": attempt.supplier,
        "upstream_order_id": attempt.upstream_order_id,
        "outcome": attempt.outcome.value,
        "code": attempt.code,
        "message": attempt.message,
        "duration_ms": attempt.duration_ms,
    }


def operator_view(order: Order) -> dict[str, Any]:
    """The shop's order JSON plus what only operators see: ids, costs, incidents, notices."""
    return {
        **public_view(order),
        "uid": order.uid,
        "shop": order.shop,
        "notify_url": order.request.notify_url,
        "face_value": format_money(order.face_value_cents),
        "attempts": [operator_attempt(a) for a in order.attempts],
        "incidents": [
            {
                "at": iso_time(i.at),
                "kind": i.kind,
                "detail": i.detail,
                "upstream_order_id": i.upstream_order_id,
                "repeats": i.repeats,
            }
            for i in order.incidents
        ],
        "notification": _notification_view(order.notification),
    }


def operator_attempt(attempt: Attempt) -> dict[str, Any]:
    """One attempt as an operator sees it: the shop's view, plus what happened inside."""
    return {
        **public_attempt(attempt),
        "sku": attempt.sku,
        "started_at": iso_time(attempt.started_at),
        "replied": attempt.replied,
        "acknowledged": attempt.acknowledged,
        "detail": attempt.detail,
        "supplier_order_id": attempt.supplier_order_id,
        "cost": format_money(attempt.cost_cents),
        "delivered_value": _optional_money(attempt.delivered_cents),
    }


def _optional_time(unix: float | None) -> str | None:
    return iso_time(unix) if unix is not None else None


def _optional_money(cents: int | None) -> str | None:
    return format_money(cents) if cents is not None else None


def _notification_view(notification: Notification | None) -> dict[str, Any] | None:
    if notification is None:
        return None
    return {
        "due_at": _optional_time(notification.due_at),
        "attempts": notification.attempts,
        "delivered_at": _optional_time(notification.delivered_at),
        "gave_up": notification.gave_up,
        "history": [
            {
                "at": iso_time(delivery.at),
                "status": delivery.status,
                "error": delivery.error,
                "duration_ms": delivery.duration_ms,
            }
            for delivery in notification.history
        ],
    }
