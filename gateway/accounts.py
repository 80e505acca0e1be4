"""Account validation per account kind (CONTRACT.md §1). Refuses, never normalises."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from adapters.interface import AccountKind

# [0-9], never \d: \d also matches full-width and other Unicode digits, and such "numbers" would
# go upstream as accounts (CONTRACT.md §7: they are invalid_account).
_MOBILE_CN: Final = re.compile(r"1[3-9][0-9]{9}")
_QQ: Final = re.compile(r"[1-9][0-9]{4,11}")
_GAME: Final = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")


def _any(account: str) -> bool:
    return 0 < len(account) <= 128 and account.isprintable() and account == account.strip()


ACCOUNT_RULES: Final[Mapping[AccountKind, tuple[Callable[[str], bool], str]]] = {
    AccountKind.MOBILE_CN: (
        lambda a: _MOBILE_CN.fullmatch(a) is not None,
        "must be an 11-digit mainland mobile number starting 13 to 19",
    ),
    AccountKind.QQ: (
        lambda a: _QQ.fullmatch(a) is not None,
        "must be a QQ number: 5 to 12 digits, no leading 0",
    ),
    AccountKind.GAME: (
        lambda a: _GAME.fullmatch(a) is not None,
        "must be 1 to 64 of letters, digits and _ . - @",
    ),
    AccountKind.ANY: (_any, "must be 1 to 128 printable characters with no whitespace at either end"),
}


def account_problem(kind: AccountKind, account: str) -> str | None:
    """None if `account` fits `kind`, else why not."""
    valid, message = ACCOUNT_RULES[kind]
    return None if valid(account) else message


def mask_account(account: str) -> str:
    """`13800138000` -> `138****8000`: enough to tell orders apart in logs, not enough to misuse."""
    if len(account) <= 4:
        return "*" * len(account)
    if len(account) >= 8:
        return account[:3] + "****" + account[-4:]
    return account[:1] + "****" + account[-2:]
