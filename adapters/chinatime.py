"""Wall-clock times as the Chinese suppliers write them: China time, UTC+8 all year round.

Pure: the caller reads the clock and passes Unix seconds in.
"""

from __future__ import annotations

import time
from typing import Final

CHINA_OFFSET_SECONDS: Final = 8 * 3600
"""China has one time zone and no daylight saving, so a fixed offset is exact."""


def format_china_time(timestamp: float, pattern: str) -> str:
    """Unix seconds formatted by `time.strftime` `pattern` in China time; fractions are dropped."""
    return time.strftime(pattern, time.gmtime(timestamp + CHINA_OFFSET_SECONDS))
