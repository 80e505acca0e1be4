"""Per-supplier rate limiting: GCRA with reservations, the algorithm apart from where its state lives.

In any window of `per` seconds a supplier gets at most `rate + burst` requests (submits and queries
alike). A caller may wait up to `max_wait` for its reserved slot; a throttling supplier is paused
by pushing its schedule into the future. State in memory here; `redisrate` runs the same arithmetic
on Redis for several instances.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.clock import Clock
from gateway.config.model import RateLimitConfig

NS: Final = 1_000_000_000


def to_ns(seconds: float) -> int:
    return round(seconds * NS)


@dataclass(frozen=True, slots=True)
class Schedule:
    """GCRA parameters in integer nanoseconds: one request per `interval`, `tolerance` of burst.

    Integers, because summed float intervals drift below `per` and would let one request too many
    into a window; the interval is rounded up for the same reason.
    """

    interval: int
    tolerance: int

    @classmethod
    def of(cls, limit: RateLimitConfig) -> Schedule:
        interval = math.ceil(to_ns(limit.per) / limit.rate)
        return cls(interval=interval, tolerance=limit.burst * interval)


class RateState(Protocol):
    """Where theoretical arrival times live; every method is atomic per key.

    `now` is the caller's monotonic clock. A state shared between instances ignores it and reads its
    server's clock instead, since the instances' clocks do not agree; durations still apply as given.
    A state that cannot reach its storage raises `StoreError` and admits nothing.
    """

    async def reserve(self, key: str, now: float, schedule: Schedule, max_wait: float) -> float | None:
        """Reserve the next slot: seconds to wait for it (0: now), or None if that is over `max_wait`."""
        ...

    async def release(self, key: str, schedule: Schedule) -> None:
        """Give back one reserved slot that was never used."""
        ...

    async def pause(self, key: str, now: float, seconds: float, schedule: Schedule) -> None:
        """No slot for the next `seconds`."""
        ...

    async def ready_in(self, key: str, now: float, schedule: Schedule) -> float:
        """Seconds until a request could go without waiting."""
        ...


class MemoryRateState:
    """Arrival times in a dict: for a single instance (Redis shares them between instances)."""

    __slots__ = ("_tat",)

    def __init__(self) -> None:
        self._tat: dict[str, int] = {}

    async def reserve(self, key: str, now: float, schedule: Schedule, max_wait: float) -> float | None:
        now_ns = to_ns(now)
        tat = self._tat.get(key, now_ns)
        wait = tat - schedule.tolerance - now_ns
        if wait > to_ns(max_wait):
            return None
        self._tat[key] = max(tat, now_ns) + schedule.interval
        return max(wait, 0) / NS

    async def release(self, key: str, schedule: Schedule) -> None:
        if key in self._tat:
            self._tat[key] -= schedule.interval

    async def pause(self, key: str, now: float, seconds: float, schedule: Schedule) -> None:
        # Past the pause's end by the tolerance: nothing before it, then the steady pace with no burst,
        # since a supplier that just throttled us should not meet a rush the moment the pause ends.
        until_ns = to_ns(now + seconds)
        self._tat[key] = max(self._tat.get(key, until_ns), until_ns + schedule.tolerance)

    async def ready_in(self, key: str, now: float, schedule: Schedule) -> float:
        now_ns = to_ns(now)
        return max(self._tat.get(key, now_ns) - schedule.tolerance - now_ns, 0) / NS


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
        """Take a slot, sleeping until it comes: the seconds waited, or None if it would take too long.

        Raises `StoreError` if the state cannot be reached: no slot was taken, the request must not go.
        """
        budget = self._limit.max_wait if max_wait is None else max_wait
        wait = await self._state.reserve(self._key, self._clock.monotonic(), self._schedule, budget)
        if wait:
            await asyncio.sleep(wait)
        return wait

    async def release(self) -> None:
        await self._state.release(self._key, self._schedule)

    async def pause(self, seconds: float) -> None:
        await self._state.pause(self._key, self._clock.monotonic(), seconds, self._schedule)

    async def ready_in(self) -> float:
        return await self._state.ready_in(self._key, self._clock.monotonic(), self._schedule)
