"""Stopping background tasks for good, even where a library loses a cancellation.

On Python 3.11 redis-py can swallow `Task.cancel()`: its `asyncio.wait_for` around a socket write
returns a result that completed together with the cancellation, and the task carries on. A shutdown
that cancels once and then awaits the task can then hang for as long as the task runs (forever, for
a loop). So a task that is still running a moment after its cancellation is cancelled again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

CANCEL_AGAIN_SECONDS: Final = 0.1


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel every task and return once all have ended; their results and errors are dropped."""
    every = set(tasks)
    pending = {task for task in every if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_SECONDS)
    for task in every:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved
