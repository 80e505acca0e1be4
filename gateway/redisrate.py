"""The rate limit's state on Redis, shared by every gateway instance: GCRA in one Lua script on Redis's clock.

Owns the keys `{<prefix>rl:<supplier>}` and `gcra.lua`; it keeps no per-process state, and when Redis
fails it raises `StoreError` and admits nothing, never falling back to counting on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.ratelimit import Schedule
from gateway.store.interface import StoreError

US: Final = 1_000_000
DEFAULT_PERMITS: Final = 32  # commands in flight on a client of its own (redis-py's pools hold 100)
GCRA_SCRIPT: Final = resources.files("gateway").joinpath("gcra.lua").read_text(encoding="utf-8")
# The script's operations, as the bytes redis-py would send for them anyway.
RESERVE: Final = b"reserve"
RELEASE: Final = b"release"
PAUSE: Final = b"pause"
READY: Final = b"ready"


def to_us(seconds: float) -> int:
    return round(seconds * US)


def micro_schedule(schedule: Schedule) -> tuple[int, int]:
    """The schedule in microseconds, never looser than in nanoseconds: interval up, tolerance down.

    `rate + burst` per `per` holds while interval × rate ≥ per and tolerance ≤ burst × interval.
    """
    return -(-schedule.interval // 1000), schedule.tolerance // 1000


@dataclass(frozen=True, slots=True)
class Slot:
    """A reserved slot on Redis's clock, in microseconds: when it was asked for, and the wait for it."""

    asked_us: int
    wait_us: int

    @property
    def at_us(self) -> int:
        """When the request may go, on Redis's clock."""
        return self.asked_us + self.wait_us


class RedisRateState:
    """Arrival times in Redis: every instance on one Redis (or Cluster) shares each supplier's pace.

    One EVALSHA per call, on one key per supplier (`{<prefix>rl:<supplier>}`, hash-tagged, so one
    slot on a Cluster), expiring once the supplier is idle. Time is Redis's own (`TIME` in the
    script): the `now` the caller passes is ignored, so instances with drifting clocks still agree;
    a supplier's pause is kept in the same key, so every instance stops sending. `TIME` is the Redis
    host's wall clock: should it step (NTP, a failover to another host), schedules shift with it once.

    What the caller sees when Redis cannot be reached or answers with an error: every method raises
    `StoreError` (chained to the redis-py error) and nothing was reserved, so `RateLimiter.acquire`
    raises it too and the request must not be sent; it is never admitted on a per-process count.
    How long an unreachable Redis takes to fail is the client's `socket_timeout`/`socket_connect_timeout`.
    """

    __slots__ = ("_client", "_permits", "_prefix", "_script")

    def __init__(
        self, client: Redis | RedisCluster, prefix: str = "gw:", permits: asyncio.Semaphore | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix
        # A client shared with the store shares its connection budget too: redis-py's pool fails
        # a command at once rather than wait for a connection, so a burst must queue here.
        self._permits = permits if permits is not None else asyncio.Semaphore(DEFAULT_PERMITS)
        # The SHA is computed here, once; redis-py's Script loads the script again on NOSCRIPT (a
        # restarted or failed-over server), on a Cluster into every primary.
        self._script = client.register_script(GCRA_SCRIPT)

    def key(self, supplier: str) -> str:
        return f"{{{self._prefix}rl:{supplier}}}"

    async def load(self) -> None:
        """Load the script at start-up (into every primary of a Cluster), so no call meets NOSCRIPT."""
        try:
            await self._client.script_load(GCRA_SCRIPT)
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(f"rate limit script could not be loaded: {exc}") from exc

    async def reserve_slot(self, key: str, schedule: Schedule, max_wait: float) -> Slot | None:
        """Reserve the next slot, or None (reserving nothing) if it is more than `max_wait` away."""
        wait_us, now_us = await self._run(RESERVE, key, schedule, to_us(max_wait))
        return None if wait_us < 0 else Slot(asked_us=now_us, wait_us=wait_us)

    async def reserve(self, key: str, now: float, schedule: Schedule, max_wait: float) -> float | None:
        slot = await self.reserve_slot(key, schedule, max_wait)
        return None if slot is None else slot.wait_us / US

    async def release(self, key: str, schedule: Schedule) -> None:
        await self._run(RELEASE, key, schedule, 0)

    async def pause(self, key: str, now: float, seconds: float, schedule: Schedule) -> None:
        await self._run(PAUSE, key, schedule, to_us(seconds))

    async def ready_in(self, key: str, now: float, schedule: Schedule) -> float:
        wait_us, _ = await self._run(READY, key, schedule, 0)
        return wait_us / US

    async def _run(self, op: bytes, key: str, schedule: Schedule, argument_us: int) -> tuple[int, int]:
        interval_us, tolerance_us = micro_schedule(schedule)
        try:
            async with self._permits:
                value, now_us = await self._script(
                    keys=[self.key(key)], args=[op, interval_us, tolerance_us, argument_us]
                )
        except (RedisError, RedisClusterException) as exc:
            # The one boundary where redis-py's errors become the gateway's: refuse, never guess.
            raise StoreError(f"rate limit state for {key!r} unavailable: {exc}") from exc
        return int(value), int(now_us)
