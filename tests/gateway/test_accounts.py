"""Account kinds and masking."""

from __future__ import annotations

import pytest

from adapters.interface import AccountKind
from gateway.accounts import account_problem, mask_account


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
