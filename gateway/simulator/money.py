"""Yuan amounts as the simulated suppliers write and read them on the wire: `"49.30"` <-> 4930 cents.

The supplier side's own reading, written from protocols/*.md; it shares no code with the adapters.
"""

from __future__ import annotations

import re
from typing import Final

# Whole yuan without leading zeros (at most twelve digits, far beyond any order) and at most two
# decimals; trailing zeros past the fen are padding. ASCII digits only: Python's `\d` and int()
# would also take full-width and other scripts' digits, which no supplier sends.
_YUAN: Final = re.compile(r"(?P<yuan>0|[1-9][0-9]{0,11})(?:\.(?P<fen>[0-9]{1,2})0*)?")


def yuan_text(cents: int) -> str:
    """4930 -> `"49.30"`: always two decimals, as every protocol prints prices."""
    if cents < 0:
        raise ValueError(f"an amount cannot be negative: {cents}")
    yuan, fen = divmod(cents, 100)
    return f"{yuan}.{fen:02d}"


def read_yuan(text: str) -> int:
    """`"50"`, `"49.3"` or `"49.30"` -> cents; `ValueError` for anything else (a sign, an exponent,
    a fraction of a fen)."""
    match = _YUAN.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an amount in yuan")
    return int(match["yuan"]) * 100 + int((match["fen"] or "").ljust(2, "0"))
