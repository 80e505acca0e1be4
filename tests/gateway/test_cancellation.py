"""Stopping tasks that lose a cancellation, as redis-py's do on Python 3.11."""

from __future__ import annotations

import asyncio

from gateway.cancellation import cancel_and_wait


async def _stubborn(swallow: int, ended: list[str]) -> None:
    """Loops on, swallowing its first `swallow` cancellations."""
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1
            if swallowed > swallow:
                ended.append("cancelled")
                raise


async def _failing() -> None:
    raise ValueError("boom")


async def test_a_task_that_swallows_cancellations_is_cancelled_until_it_ends() -> None:
    ended: list[str] = []
    stubborn = asyncio.ensure_future(_stubborn(2, ended))
    plain = asyncio.ensure_future(asyncio.sleep(3600))
    failed = asyncio.ensure_future(_failing())
    await asyncio.sleep(0)

    async with asyncio.timeout(30):  # a bound on a hang, not a measurement
        await cancel_and_wait([stubborn, plain, failed])

    assert ended == ["cancelled"]
    assert stubborn.cancelled()
    assert plain.cancelled()
    assert isinstance(failed.exception(), ValueError)


async def test_nothing_to_stop_returns_at_once() -> None:
    done = asyncio.ensure_future(asyncio.sleep(0))
    await done
    await cancel_and_wait([done])
    await cancel_and_wait([])
