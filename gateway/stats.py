"""The figures of `/admin/stats` (CONTRACT.md §9): a window's orders summed by supplier, product or shop.

Pure: it is handed stored orders one by one and never reads the store, the clock or the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any, Final, assert_never

from gateway.money import format_money
from gateway.order import Order, OrderStatus

CHINA: Final = timezone(timedelta(hours=8), "China")


class Grouping(StrEnum):
    SUPPLIER = "supplier"
    PRODUCT = "product"
    SHOP = "shop"


def china_day(now: float) -> tuple[float, float]:
    """The China day (UTC+8, no daylight saving) around `now`: [its midnight, the next midnight)."""
    midnight = datetime.combine(datetime.fromtimestamp(now, CHINA).date(), time(), CHINA)
    return midnight.timestamp(), (midnight + timedelta(days=1)).timestamp()


def china_midnight(day: str) -> float:
    """`"2026-11-22"` -> the start of that day in China. `ValueError` if it is not such a date."""
    return datetime.combine(datetime.strptime(day, "%Y-%m-%d").date(), time(), CHINA).timestamp()


def key_of(order: Order, by: Grouping) -> str | None:
    """The row an order counts in; by supplier, that of its deciding attempt, None if it never had one."""
    match by:
        case Grouping.SUPPLIER:
            # The attempt that delivered, else the last: the supplier the shop sees on the order.
            deciding = order.deciding_attempt
            return deciding.supplier if deciding is not None else None
        case Grouping.PRODUCT:
            return order.request.product
        case Grouping.SHOP:
            return order.shop
        case _:
            assert_never(by)


@dataclass(slots=True)
class _Row:
    orders: int = 0
    by_status: dict[OrderStatus, int] = field(default_factory=lambda: dict.fromkeys(OrderStatus, 0))
    face_value_cents: int = 0
    delivered_cents: int = 0
    cost_cents: int = 0
    latencies: list[float] = field(default_factory=list)


class Figures:
    """Sums of a window's orders, one row per key; `add` each order once, then read `rows`.

    - `face_value`: what the shops asked for (face value × quantity), every order;
    - `delivered_value`: what reached the accounts: all of a succeeded order, the reported part of a
      partial one;
    - `cost`: what the deciding supplier charged for succeeded and partial orders (as
      `gateway_order_cost_total` counts it); a failed order costs nothing;
    - `success_rate`: succeeded and partial over the orders that are final, null before any is;
    - `latency_p50_seconds`: the median of accept-to-final over final orders (the order's last
      update; a contradicting report kept as an incident after the end moves it), null before any.
    """

    __slots__ = ("_by", "_rows")

    def __init__(self, by: Grouping) -> None:
        self._by = by
        self._rows: dict[str | None, _Row] = {}

    def add(self, order: Order) -> None:
        key = key_of(order, self._by)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row()
        row.orders += 1
        row.by_status[order.status] += 1
        row.face_value_cents += order.face_value_cents * order.request.quantity
        deciding = order.deciding_attempt
        match order.status:
            case OrderStatus.SUCCEEDED:
                row.delivered_cents += order.face_value_cents * order.request.quantity
            case OrderStatus.PARTIAL:
                if deciding is not None:
                    row.delivered_cents += deciding.delivered_cents or 0
            case OrderStatus.FAILED | OrderStatus.PROCESSING:
                pass
            case _:
                assert_never(order.status)
        if order.status in (OrderStatus.SUCCEEDED, OrderStatus.PARTIAL) and deciding is not None:
            row.cost_cents += deciding.cost_cents
        if order.status.final:
            row.latencies.append(max(0.0, order.updated_at - order.created_at))

    def rows(self) -> list[dict[str, Any]]:
        """The rows as CONTRACT.md §9 shows them, by key (the orders without a supplier last)."""
        return [_view(key, self._rows[key]) for key in sorted(self._rows, key=lambda k: (k is None, k or ""))]


def _view(key: str | None, row: _Row) -> dict[str, Any]:
    succeeded = row.by_status[OrderStatus.SUCCEEDED]
    partial = row.by_status[OrderStatus.PARTIAL]
    final = row.orders - row.by_status[OrderStatus.PROCESSING]
    return {
        "key": key,
        "orders": row.orders,
        "succeeded": succeeded,
        "failed": row.by_status[OrderStatus.FAILED],
        "partial": partial,
        "processing": row.by_status[OrderStatus.PROCESSING],
        "success_rate": round((succeeded + partial) / final, 4) if final else None,
        "face_value": format_money(row.face_value_cents),
        "delivered_value": format_money(row.delivered_cents),
        "cost": format_money(row.cost_cents),
        "latency_p50_seconds": _median(row.latencies),
    }


def _median(values: list[float]) -> float | None:
    """The nearest-rank median, rounded to milliseconds (as the orders' times are kept)."""
    if not values:
        return None
    values.sort()
    return round(values[math.ceil(len(values) / 2) - 1], 3)


def parse_moment(text: str) -> float:
    """An ISO 8601 time with its offset, or a date (that China day's midnight). `ValueError` otherwise."""
    if len(text) == 10:
        return china_midnight(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        # A time without an offset could be China time or UTC: eight hours apart.
        raise ValueError("has no offset")
    return moment.astimezone(UTC).timestamp()
