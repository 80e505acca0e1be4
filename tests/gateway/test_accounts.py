"""Account kinds and masking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.interface import AccountKind
from gateway.accounts import account_problem, mask_account

# Decimal digits of every script but ASCII: full-width １, Arabic-Indic ٣, Devanagari ७, ...
UNICODE_DIGITS = st.characters(categories=["Nd"], exclude_characters="0123456789")


@pytest.mark.parametrize(
    ("kind", "account", "ok"),
    [
        (AccountKind.MOBILE_CN, "13800138000", True),
        (AccountKind.MOBILE_CN, "19912345678", True),
        (AccountKind.MOBILE_CN, "12800138000", False),
        (AccountKind.MOBILE_CN, "138001380001", False),
        (
            AccountKind.MOBILE_CN,
            "１３８００１３８０００",
            False,
        ),  # full-width digits are refused, not normalised
        (AccountKind.QQ, "10001", True),
        (AccountKind.QQ, "123456789012", True),
        (AccountKind.QQ, "0123456", False),
        (AccountKind.GAME, "player_1.x-y@zone", True),
        (AccountKind.GAME, "has space", False),
        (AccountKind.GAME, "a" * 65, False),
        (AccountKind.ANY, "任意 account", True),
        (AccountKind.ANY, " padded", False),
        (AccountKind.ANY, "tab\there", False),
        (AccountKind.ANY, "", False),
        (AccountKind.ANY, "x" * 129, False),
    ],
)
def test_account_kinds(kind: AccountKind, account: str, ok: bool) -> None:
    assert (account_problem(kind, account) is None) is ok


def test_masking_hides_the_middle() -> None:
    assert mask_account("13800138000") == "138****8000"
    assert mask_account("12345") == "1****45"
    assert mask_account("123") == "***"


@given(UNICODE_DIGITS, st.integers(min_value=2, max_value=10))
def test_a_mobile_number_with_any_non_ascii_digit_is_refused(digit: str, position: int) -> None:
    # Prefix 1[3-9] kept ASCII, so only the class of the later digits is on trial.
    number = "13800138000"
    assert account_problem(AccountKind.MOBILE_CN, number) is None
    assert account_problem(AccountKind.MOBILE_CN, number[:position] + digit + number[position + 1 :])


@given(UNICODE_DIGITS, st.integers(min_value=1, max_value=8))
def test_a_qq_number_with_any_non_ascii_digit_is_refused(digit: str, position: int) -> None:
    number = "123456789"
    assert account_problem(AccountKind.QQ, number) is None
    assert account_problem(AccountKind.QQ, number[:position] + digit + number[position + 1 :])


@given(st.lists(UNICODE_DIGITS, min_size=9, max_size=9))
def test_a_mobile_number_of_unicode_digits_after_13_is_refused(digits: list[str]) -> None:
    assert account_problem(AccountKind.MOBILE_CN, "13" + "".join(digits))
