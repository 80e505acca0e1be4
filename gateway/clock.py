"""Time as a collaborator: domain classes take a `Clock`, so tests move time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time for records and signatures, monotonic time for windows and timeouts."""

    def now(self) -> float:
        """Unix seconds."""
        ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    __slots__ = ("_mono", "_wall")

    def __init__(self, wall: float = 1_795_000_000.0, mono: float = 1_000.0) -> None:
        self._wall = wall
        self._mono = mono

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds


class ShiftedClock:
    """The real clock moved forward on demand: for end-to-end tests that skip past windows."""

    __slots__ = ("_shift",)

    def __init__(self) -> None:
        self._shift = 0.0

    def now(self) -> float:
        return time.time() + self._shift

    def monotonic(self) -> float:
        return time.monotonic() + self._shift

    def advance(self, seconds: float) -> None:
        self._shift += seconds
