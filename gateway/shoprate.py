"""Each shop's request rate (`shops.*.rate_limit`, CONTRACT.md §7): GCRA, refused rather than waited for.

Checked after a request's signature holds (so nobody spends another shop's budget) and before its
nonce is claimed (so a refused request leaves nothing behind and may be sent again, nonce and all).
The arithmetic and its state are the suppliers' (`ratelimit.py`): in memory for one instance, in
Redis for several, so every instance together keeps one shop to its rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from gateway.clock import Clock
from gateway.config.model import RateLimitConfig
from gateway.errors import RateLimited
from gateway.ratelimit import RateState, Schedule

KEY_PREFIX = "shop:"  # apart from supplier names, which never hold a colon


class ShopRates:
    """The shops' request budgets; shops without `rate_limit` are never refused here."""

    __slots__ = ("_clock", "_schedules", "_state")

    def __init__(self, limits: Mapping[str, RateLimitConfig | None], state: RateState, clock: Clock) -> None:
        self._state = state
        self._clock = clock
        self._schedules: dict[str, Schedule] = {}
        self.reconfigure(limits)

    def reconfigure(self, limits: Mapping[str, RateLimitConfig | None]) -> None:
        """Take reloaded limits; the shops' places in their schedules are kept."""
        self._schedules = {shop: Schedule.of(limit) for shop, limit in limits.items() if limit is not None}

    async def admit(self, shop: str) -> None:
        """Take one request's slot now, or raise `RateLimited` saying when one is free.

        Raises `StoreError` where the shared state cannot be reached: nothing is admitted unseen.
        """
        schedule = self._schedules.get(shop)
        if schedule is None:
            return
        key = KEY_PREFIX + shop
        now = self._clock.monotonic()
        if await self._state.reserve(key, now, schedule, 0.0) is not None:
            return
        ready_in = await self._state.ready_in(key, now, schedule)
        raise RateLimited(
            f"shop {shop!r} sends faster than its rate_limit; send again later",
            headers={"Retry-After": str(max(1, math.ceil(ready_in)))},
        )
