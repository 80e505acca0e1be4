"""The simulator's own reading and writing of yuan amounts, as every protocol file prints prices."""

from __future__ import annotations

import pytest

from gateway.simulator.money import read_yuan, yuan_text


@pytest.mark.parametrize(("cents", "text"), [(4930, "49.30"), (5000, "50.00"), (5, "0.05"), (0, "0.00")])
def test_yuan_text_always_has_two_decimals(cents: int, text: str) -> None:
    assert yuan_text(cents) == text
    assert read_yuan(text) == cents


def test_yuan_text_refuses_a_negative_amount() -> None:
    with pytest.raises(ValueError, match="negative"):
        yuan_text(-1)


@pytest.mark.parametrize(("text", "cents"), [("50", 5000), ("49.3", 4930), ("49.3000", 4930), ("0", 0)])
def test_read_yuan(text: str, cents: int) -> None:
    assert read_yuan(text) == cents


@pytest.mark.parametrize(
    "text", ["", "050", "-1", "+1", "1e3", "49.", ".5", "49.301", "４９", "49,30", " 50", "1" * 13]
)
def test_read_yuan_refuses_what_is_not_plain_yuan(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        read_yuan(text)
