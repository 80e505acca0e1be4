"""Durations: a number with a unit (`250ms`, `2s`, `5m`, `24h`) outside, float seconds inside."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

DURATION_PATTERN: Final = r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)"
"""What a duration looks like: a plain number and a unit (whole-string match; the schema reuses it)."""

_DURATION: Final = re.compile(DURATION_PATTERN)
_UNIT_SECONDS: Final = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def parse_duration(text: str) -> float:
    """`"250ms"` -> 0.25, `"5m"` -> 300.0. The unit is required; raises `ValueError` otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 250ms, 2s, 5m or 24h")
    number, unit = match.groups()
    return float(Decimal(number) * _UNIT_SECONDS[unit])


def format_duration(seconds: float) -> str:
    """The inverse of `parse_duration`, in the largest unit that keeps the number short: 300.0 -> `"5m"`."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{_plain(seconds / 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{_plain(seconds / 60)}m"
    if seconds == 0 or seconds >= 1:
        return f"{_plain(seconds)}s"
    return f"{_plain(seconds * 1000)}ms"


def _plain(number: float) -> str:
    """Without exponent or float noise, to the microsecond: 1.5 -> "1.5", 250.00000000000003 -> "250"."""
    return f"{number:.6f}".rstrip("0").rstrip(".")
