"""Supplier money strings and numbers to exact cents (or a ValueError), and cents back to yuan text."""

from __future__ import annotations

import pytest

from adapters.amounts import optional_cents, parse_cents, yuan_text


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        ("49.30", 4930),
        ("49.3", 4930),
        ("49.3000", 4930),
        ("50", 5000),
        ("0.01", 1),
        ("0", 0),
        (49.25, 4925),
        (50, 5000),
    ],
)
def test_amounts(value: str | int | float, cents: int) -> None:
    assert parse_cents(value) == cents


@pytest.mark.parametrize(
    "value", ["", "-1", "1e3", "49.301", "049.30", "49,30", " 49.30", "forty", True, 0.1 + 0.2]
)
def test_not_amounts(value: str | int | float) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        parse_cents(value)


@pytest.mark.parametrize("value", ["４９.３０", "49.３0", "٤٩.٣٠", "𝟒𝟗.30", "४९"])
def test_only_ascii_digits_are_amounts(value: str) -> None:
    # `\d` and int() read these as 49.30; no supplier writes prices in them, and a forger might.
    with pytest.raises(ValueError, match="not an amount"):
        parse_cents(value)
    assert optional_cents(value) is None


@pytest.mark.parametrize(
    ("value", "cents"),
    [("49.30", 4930), (49.3, 4930), (50, 5000), ("49.301", None), (True, None), (None, None), ({}, None)],
)
def test_optional_cents(value: object, cents: int | None) -> None:
    assert optional_cents(value) == cents


def test_yuan_text() -> None:
    assert [yuan_text(cents) for cents in (4930, 5000, 5, 0, 123456)] == [
        "49.30",
        "50.00",
        "0.05",
        "0.00",
        "1234.56",
    ]
    with pytest.raises(ValueError, match="negative"):
        yuan_text(-1)
