"""Per-supplier rate limiting: GCRA with reservations, the algorithm apart from where its state lives.

In any window of `per` seconds a supplier gets at most `rate + burst` requests (submits and queries
alike). A caller may wait up to `max_wait` for its reserved slot; a throttling supplier is paused
by pushing its schedule into the future. Memory state now; a Redis state runs the same arithmetic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from gateway.clock import Clock
from gateway.config.model import RateLimitConfig


@dataclass(frozen=True, slots=True)
class Schedule:
    """GCRA parameters: one request per `interval`, `tolerance` seconds of burst ahead of schedule."""

    interval: float
    tolerance: float

    @classmethod
    def of(cls, limit: RateLimitConfig) -> Schedule:
        interval = limit.per / limit.rate
        return cls(interval=interval, tolerance=limit.burst * interval)


class RateState(Protocol):
    """Where theoretical arrival times live; every method is atomic per key."""

    async def reserve(self, key: str, now: float, schedule: Schedule, max_wait: float) -> float | None:
        """Reserve the next slot: seconds to wait for it (0: now), or None if that is over `max_wait`."""
        ...

    async def release(self, key: str, schedule: Schedule) -> None:
        """Give back one reserved slot that was never used."""
        ...

    async def pause(self, key: str, until: float, schedule: Schedule) -> None:
        """No slot before `until`."""
        ...

    async def ready_in(self, key: str, now: float, schedule: Schedule) -> float:
        """Seconds until a request could go without waiting."""
        ...


class MemoryRateState:
    """Arrival times in a dict: for a single instance (Redis shares them between instances)."""

    __slots__ = ("_tat",)

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def reserve(self, key: str, now: float, schedule: Schedule, max_wait: float) -> float | None:
        tat = self._tat.get(key, now)
        wait = tat - schedule.tolerance - now
        if wait > max_wait:
            return None
        self._tat[key] = max(tat, now) + schedule.interval
        return max(wait, 0.0)

    async def release(self, key: str, schedule: Schedule) -> None:
        if key in self._tat:
            self._tat[key] -= schedule.interval

    async def pause(self, key: str, until: float, schedule: Schedule) -> None:
        # Arrival times pushed past `until` by the tolerance: the burst allowance starts afresh then.
        self._tat[key] = max(self._tat.get(key, until), until + schedule.tolerance)

    async def ready_in(self, key: str, now: float, schedule: Schedule) -> float:
        return max(self._tat.get(key, now) - schedule.tolerance - now, 0.0)


class RateLimiter:
    """Admits requests to one supplier at its configured pace, waiting at most `max_wait` for a slot."""

    __slots__ = ("_clock", "_key", "_limit", "_schedule", "_state")

    def __init__(self, key: str, limit: RateLimitConfig, state: RateState, clock: Clock) -> None:
        self._key = key
        self._limit = limit
        self._schedule = Schedule.of(limit)
        self._state = state
        self._clock = clock

    async def acquire(self, *, max_wait: float | None = None) -> float | None:
        """Take a slot, sleeping until it comes: the seconds waited, or None if it would take too long."""
        budget = self._limit.max_wait if max_wait is None else max_wait
        wait = await self._state.reserve(self._key, self._clock.monotonic(), self._schedule, budget)
        if wait:
            await asyncio.sleep(wait)
        return wait

    async def release(self) -> None:
        await self._state.release(self._key, self._schedule)

    async def pause(self, seconds: float) -> None:
        await self._state.pause(self._key, self._clock.monotonic() + seconds, self._schedule)

    async def ready_in(self) -> float:
        return await self._state.ready_in(self._key, self._clock.monotonic(), self._schedule)
