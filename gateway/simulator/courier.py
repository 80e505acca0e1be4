"""Delivery of a simulated supplier's callbacks to the gateway, retried until acknowledged.

Owns the simulator's client session; it neither decides what to report nor drops anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from gateway.simulator.front import HttpRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    attempts: int
    acknowledged: bool


class Courier:
    """POSTs callbacks; `start` and `close` bracket its session (the simulator's app does both)."""

    __slots__ = ("_attempts", "_retry_seconds", "_session", "_timeout")

    def __init__(self, *, attempts: int, retry_seconds: float, timeout_seconds: float) -> None:
        if attempts < 1:
            raise ValueError("a callback needs at least one attempt")
        self._attempts = attempts
        self._retry_seconds = retry_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(
        self,
        request: HttpRequest,
        acknowledged: Callable[[int, bytes], bool],
        on_attempt: Callable[[], None] = lambda: None,
        attempts: int | None = None,
    ) -> Delivery:
        """Send until `acknowledged(status, body)` or the attempts run out, `retry_seconds` apart.

        `attempts` overrides the courier's own count for this one request (a forger sends once).
        """
        if self._session is None:
            raise RuntimeError("the courier is not started")
        attempts = self._attempts if attempts is None else attempts
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._retry_seconds)
            on_attempt()
            try:
                async with self._session.request(
                    request.method, request.url, headers=dict(request.headers), data=request.body
                ) as response:
                    if acknowledged(response.status, await response.read()):
                        return Delivery(attempts=attempt, acknowledged=True)
            except (aiohttp.ClientError, TimeoutError):
                # The gateway may be down or restarting: exactly what callback retries are for.
                continue
        return Delivery(attempts=attempts, acknowledged=False)
