"""What reached a simulated supplier and when: the record rate-limit tests assert on.

Owns the log and the window arithmetic; it refuses nothing itself.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from gateway.simulator.faults import Fault

DEFAULT_CAPACITY: Final = 20_000
"""Requests a log keeps: about 2 MB; far more than any test's windows ask about."""


class Operation(StrEnum):
    SUBMIT = "submit"
    QUERY = "query"
    BALANCE = "balance"
    OTHER = "other"  # unreadable, unsigned or unknown requests


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedRequest:
    at: float  # monotonic seconds
    operation: Operation
    # RESET or CRASH: a submit answered by a reset; LAG: a query that said "not found" for an order
    # it had charged (at least one of those it named), because of the lag.
    fault: Fault | None = None


class RequestLog:
    """Every request received, in arrival order (so `at` never decreases).

    Keeps the latest `capacity` only, so a long demo run does not grow without bound.
    """

    __slots__ = ("_requests",)

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._requests: deque[LoggedRequest] = deque(maxlen=capacity)

    def record(self, at: float, operation: Operation, fault: Fault | None = None) -> None:
        self._requests.append(LoggedRequest(at=at, operation=operation, fault=fault))

    def requests(
        self, operation: Operation | None = None, *, fault: Fault | None = None
    ) -> list[LoggedRequest]:
        """The requests of `operation` (all when None), only those that met `fault` when given."""
        return [
            r
            for r in self._requests
            if (operation is None or r.operation is operation) and (fault is None or r.fault is fault)
        ]

    def __len__(self) -> int:
        return len(self._requests)

    def max_in_window(self, seconds: float = 1.0, operation: Operation | None = None) -> int:
        """The most requests that fell in any half-open window `[t, t + seconds)`."""
        times = [r.at for r in self.requests(operation)]
        # The busiest window can always be slid right until it starts at a request.
        return max((bisect_left(times, start + seconds) - i for i, start in enumerate(times)), default=0)
