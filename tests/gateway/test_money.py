"""Money strings: only ASCII digits are amounts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.money import InvalidMoney, parse_money


@given(
    st.characters(categories=["Nd"], exclude_characters="0123456789"),
    st.sampled_from(["{}", "4{}.30", "49.{}0", "1{}"]),
)
def test_an_amount_with_any_non_ascii_digit_is_refused(digit: str, shape: str) -> None:
    # int() would read "４９.３０" as 4930 fen: the pattern must refuse it first.
    with pytest.raises(InvalidMoney):
        parse_money(shape.format(digit))


def test_ascii_amounts_still_parse() -> None:
    assert parse_money("49.30") == 4930
    assert parse_money("0") == 0
