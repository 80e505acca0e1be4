"""A supplier's recent record: calls, failures and slow calls over a rolling window, and recent latencies.

The breaker trips on it; adaptive routing and `/admin/suppliers` read it. Time comes from the
caller, so tests move a clock instead of sleeping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

BUCKETS: Final = 10
LATENCY_SAMPLES: Final = 256


@dataclass(frozen=True, slots=True)
class WindowCounts:
    calls: int
    failures: int
    slow: int
    successes: int  # calls the supplier answered with a delivery

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.calls if self.calls else 0.0


class CallWindow:
    """Counts over the last `window_seconds`, kept in ten buckets so old calls fall away cheaply."""

    __slots__ = ("_buckets", "_span", "_window")

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._span = window_seconds / BUCKETS
        # Each bucket: [bucket index, calls, failures, slow, successes]
        self._buckets: deque[list[float]] = deque()

    def record(self, now: float, *, failed: bool, slow: bool, delivered: bool = False) -> None:
        index = now // self._span
        if not self._buckets or self._buckets[-1][0] != index:
            self._buckets.append([index, 0, 0, 0, 0])
            self._expire(now)
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        bucket[4] += delivered

    def counts(self, now: float) -> WindowCounts:
        self._expire(now)
        calls = failures = slow = successes = 0
        for _, c, f, s, d in self._buckets:
            calls += int(c)
            failures += int(f)
            slow += int(s)
            successes += int(d)
        return WindowCounts(calls=calls, failures=failures, slow=slow, successes=successes)

    def clear(self) -> None:
        self._buckets.clear()

    def _expire(self, now: float) -> None:
        oldest = (now - self._window) // self._span
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()


class LatencySample:
    """The most recent call durations, for p50/p99 on demand (never computed per order)."""

    __slots__ = ("_values",)

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
