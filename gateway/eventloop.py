"""Which event loop `gateway run` runs on: uvloop by default, the standard library's when told.

uvloop does the loop's own work (sockets, timers, callbacks) in C and takes a good share off
every order's cost; the standard loop stays one switch away (`--event-loop asyncio` or
`GATEWAY_EVENT_LOOP=asyncio`), for a platform without uvloop or to rule it out when debugging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Final

ENVIRONMENT_VARIABLE: Final = "GATEWAY_EVENT_LOOP"


class EventLoop(StrEnum):
    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"


def chosen_loop(flag: str | None, environ: Mapping[str, str]) -> EventLoop:
    """The command line's choice, else the environment's, else uvloop; ValueError names the choices."""
    name = flag or environ.get(ENVIRONMENT_VARIABLE) or EventLoop.UVLOOP.value
    try:
        return EventLoop(name.strip().lower())
    except ValueError:
        choices = ", ".join(e.value for e in EventLoop)
        raise ValueError(f"unknown event loop {name!r}; choose one of {choices}") from None


def loop_factory(loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for `asyncio.Runner`; ImportError if uvloop is chosen but not installed."""
    match loop:
        case EventLoop.UVLOOP:
            import uvloop

            return uvloop.new_event_loop
        case EventLoop.ASYNCIO:
            return asyncio.new_event_loop
