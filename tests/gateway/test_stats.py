"""The figures' arithmetic (gateway/stats.py): rows by supplier, product, shop; money, rates, China days."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from adapters.interface import Outcome
from gateway.order import Order, OrderRequest, OrderStatus, Reason
from gateway.stats import Figures, Grouping, china_day, parse_moment
from tests.store.samples import T0, an_attempt, an_order


def finished(
    uid: str,
    status: OrderStatus,
    *,
    supplier: str = "fulu",
    seconds: float = 1.0,
    quantity: int = 1,
    product: str = "cmcc-100",
    shop: str = "shop-a",
    delivered_cents: int | None = None,
    cost_cents: int = 9_850,
) -> Order:
    outcome = {
        OrderStatus.SUCCEEDED: Outcome.SUCCEEDED,
        OrderStatus.PARTIAL: Outcome.PARTIAL,
        OrderStatus.FAILED: Outcome.FAILED,
        OrderStatus.PROCESSING: Outcome.PROCESSING,
    }[status]
    attempt = an_attempt(
        uid, 1, supplier=supplier, outcome=outcome, delivered_cents=delivered_cents, cost_cents=cost_cents
    )
    order = an_order(
        uid,
        shop=shop,
        status=status,
        reason=None if status is not OrderStatus.PROCESSING else Reason.AWAITING_SUPPLIER,
        updated_at=T0 + seconds,
        attempts=(attempt,),
    )
    request = OrderRequest(
        order_id=order.order_id, product=product, account="13800138000", quantity=quantity, notify_url=None
    )
    return replace(order, request=request)


def rows_of(by: Grouping, *orders: Order) -> list[dict[str, object]]:
    figures = Figures(by)
    for order in orders:
        figures.add(order)
    return figures.rows()


def test_a_supplier_row_sums_counts_money_rate_and_median_latency() -> None:
    rows = rows_of(
        Grouping.SUPPLIER,
        finished("G1", OrderStatus.SUCCEEDED, seconds=1.0, quantity=2, cost_cents=19_700),
        finished("G2", OrderStatus.PARTIAL, seconds=3.0, delivered_cents=2_500, cost_cents=4_925),
        finished("G3", OrderStatus.FAILED, seconds=2.0),
        finished("G4", OrderStatus.PROCESSING, seconds=50.0),
    )

    assert rows == [
        {
            "key": "fulu",
            "orders": 4,
            "succeeded": 1,
            "failed": 1,
            "partial": 1,
            "processing": 1,
            "success_rate": round(2 / 3, 4),
            "face_value": "500",  # 100 × 2 + 100 + 100 + 100
            "delivered_value": "225",  # 200 of the succeeded order, 25 of the partial one
            "cost": "246.25",  # the failed and processing orders cost nothing
            "latency_p50_seconds": 2.0,  # of the final ones: 1, 2, 3
        }
    ]


def test_an_order_counts_for_the_supplier_that_decided_it() -> None:
    failed_first = an_attempt("G1", 1, supplier="juhe", outcome=Outcome.FAILED)
    delivered = an_attempt("G1", 2, supplier="fulu", outcome=Outcome.SUCCEEDED)
    order = replace(finished("G1", OrderStatus.SUCCEEDED), attempts=(failed_first, delivered))
    never_sent = replace(finished("G2", OrderStatus.FAILED), attempts=(), reason=Reason.NO_SUPPLIER_AVAILABLE)

    rows = rows_of(Grouping.SUPPLIER, order, never_sent)

    assert [(r["key"], r["orders"], r["succeeded"], r["failed"]) for r in rows] == [
        ("fulu", 1, 1, 0),
        (None, 1, 0, 1),  # no attempt, no supplier: last
    ]


@pytest.mark.parametrize(
    ("by", "keys"),
    [
        (Grouping.SUPPLIER, ["fulu", "juhe"]),
        (Grouping.PRODUCT, ["cmcc-100", "cmcc-50"]),
        (Grouping.SHOP, ["shop-a", "shop-b"]),
    ],
)
def test_rows_are_by_the_asked_key_in_key_order(by: Grouping, keys: list[str]) -> None:
    rows = rows_of(
        by,
        finished("G1", OrderStatus.SUCCEEDED, supplier="juhe", product="cmcc-50", shop="shop-b"),
        finished("G2", OrderStatus.SUCCEEDED),
    )

    assert [r["key"] for r in rows] == keys


def test_a_row_with_nothing_final_has_no_rate_and_no_latency() -> None:
    [row] = rows_of(Grouping.PRODUCT, finished("G1", OrderStatus.PROCESSING))

    assert row["success_rate"] is None
    assert row["latency_p50_seconds"] is None
    assert row["cost"] == "0"


def test_no_orders_no_rows() -> None:
    assert rows_of(Grouping.SHOP) == []


def test_the_china_day_runs_from_midnight_utc_plus_8() -> None:
    # 2026-11-22 23:30 UTC is 2026-11-23 07:30 in China
    now = datetime.fromisoformat("2026-11-22T23:30:00+00:00").timestamp()

    start, end = china_day(now)

    assert start == datetime.fromisoformat("2026-11-23T00:00:00+08:00").timestamp()
    assert end - start == 86_400


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2026-11-22", "2026-11-22T00:00:00+08:00"),
        ("2026-11-22T10:00:00+08:00", "2026-11-22T10:00:00+08:00"),
        ("2026-11-22T02:00:00Z", "2026-11-22T10:00:00+08:00"),
    ],
)
def test_moments_are_times_with_offsets_or_china_dates(text: str, iso: str) -> None:
    assert parse_moment(text) == datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize("text", ["2026-11-22T10:00:00", "yesterday", "2026-13-01", ""])
def test_a_moment_without_offset_or_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_moment(text)
