"""Supplier money strings to integer cents and back, the one reading and writing every protocol shares.

Pure and strict: a value it cannot read exactly is a `ValueError`, never a rounded guess.
"""

from __future__ import annotations

import re
from typing import Final

# Suppliers pad prices ("49.3000") or send JSON numbers; only zeros may follow the cents. ASCII
# digits only: `\d` and int() would also read "４９.３０" (full-width) and other scripts' digits.
_AMOUNT: Final = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2})0*)?")


def parse_cents(value: str | int | float) -> int:
    """`"49.30"`, `"49.3"`, `49.3` or `"49.3000"` -> 4930; no sign, no exponent, at most cents."""
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, bool) or (match := _AMOUNT.fullmatch(text)) is None:
        raise ValueError(f'{value!r} is not an amount like "49.30"')
    whole, fraction = match.groups()
    return int(whole) * 100 + int((fraction or "0").ljust(2, "0"))


def optional_cents(value: object) -> int | None:
    """An optional amount in a reply, or None when absent or unreadable: the caller judges what that means."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        return parse_cents(value)
    except ValueError:
        return None


def yuan_text(cents: int) -> str:
    """Integer cents as suppliers write yuan: 4930 -> `"49.30"`; the inverse of `parse_cents`."""
    if cents < 0:
        raise ValueError(f"an amount cannot be negative: {cents}")
    return f"{cents // 100}.{cents % 100:02d}"
