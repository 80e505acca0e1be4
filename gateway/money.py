"""Money: integer minor units (fen) inside, decimal strings outside. Never a float."""

from __future__ import annotations

import re
from typing import Final

# [0-9], never \d: \d (and int()) would also take full-width and other Unicode digits.
_DECIMAL: Final = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")


class InvalidMoney(ValueError):
    """A string that is not a non-negative decimal amount with at most two decimals."""


def parse_money(text: str) -> int:
    """`"49.30"` -> 4930. At most two decimals, no sign, no exponent, no grouping."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidMoney(f'{text!r} is not a decimal amount like "49.30"')
    whole, fraction = match.groups()
    return int(whole) * 100 + int((fraction or "0").ljust(2, "0"))


def format_money(cents: int) -> str:
    """4930 -> `"49.30"`, 5000 -> `"50"`: whole amounts without decimals, others with two."""
    whole, fraction = divmod(cents, 100)
    return str(whole) if fraction == 0 else f"{whole}.{fraction:02d}"
