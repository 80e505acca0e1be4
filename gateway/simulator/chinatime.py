"""Wall-clock times as the simulated suppliers print them: China time (UTC+8), no daylight saving.

Pure: the caller reads the clock and passes Unix seconds in.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Final

CHINA: Final = timezone(timedelta(hours=8), "CST")
"""China keeps one zone all year, so a fixed offset is exact (and needs no tz database)."""


def china_time(timestamp: float, pattern: str) -> str:
    """Unix seconds in China time by `strftime` `pattern`; fractions of a second are dropped."""
    return datetime.fromtimestamp(int(timestamp), CHINA).strftime(pattern)
