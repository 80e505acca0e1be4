"""A simulated supplier's TCP listener, which can crash: reset every connection and refuse new ones a while.

Owns the listening socket and the aiohttp runner behind it; it knows no protocol and decides no fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from gateway.clock import Clock

POLL_SECONDS: Final = 0.01
"""How often a crashed listener reads its clock to see whether to listen again: a test clock moves
in jumps, so the outage ends within this much real time of the jump."""

_LINGER_NOW: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() sends RST, not FIN


def reset(transport: asyncio.Transport | None) -> None:
    """Reset a connection: RST where the socket allows it, unflushed; nothing when already gone."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the peer may have gone already
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NOW)
    transport.abort()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outage:
    """One crash: when it began and ended (monotonic, the listener's clock) and what it cut."""

    started_at: float
    until: float
    connections_reset: int


class Listener:
    """Serves `app` on `host:port` (0: any free port, kept across outages) until `close`."""

    def __init__(self, app: web.Application, host: str, port: int, *, clock: Clock) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host = host
        self._port = port
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._listening = asyncio.Event()
        self._until = 0.0
        self._reopening: asyncio.Task[None] | None = None
        self._closed = False
        self.outages: list[Outage] = []

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL to reach it, without a trailing slash."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self) -> None:
        await self._runner.setup()
        await self._listen()

    async def close(self) -> None:
        """Stop listening and shut the app down; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._reopening is not None:
            self._reopening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopening
        self._stop_listening()
        await self._runner.cleanup()

    async def wait_listening(self) -> None:
        """Until it listens again after an outage; bound it with `asyncio.timeout`."""
        await self._listening.wait()

    def crash(self, refuse_seconds: float) -> None:
        """Stop listening, reset every open connection, listen again `refuse_seconds` later.

        A crash during an outage extends it. Connects meanwhile find no listener: ECONNREFUSED.
        """
        if self._closed:
            return
        now = self._clock.monotonic()
        self._until = max(self._until, now + refuse_seconds)
        self._stop_listening()
        server = self._runner.server
        handlers = server.connections if server is not None else []
        for handler in handlers:
            reset(handler.transport)
        self.outages.append(Outage(started_at=now, until=self._until, connections_reset=len(handlers)))
        if self._reopening is None or self._reopening.done():
            self._reopening = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        # Polled, not awaited on an event: a test clock jumps without telling anyone.
        while (left := self._until - self._clock.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, POLL_SECONDS))
        await self._listen()

    async def _listen(self) -> None:
        server = self._runner.server
        if server is None:
            raise RuntimeError("the listener is not started")
        # reuse_address: the port is bound again at once after an outage, whatever TIME_WAIT holds.
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._listening.set()

    def _stop_listening(self) -> None:
        # Closing an asyncio.Server closes its listening sockets only: open connections stay.
        if self._server is not None:
            self._server.close()
            self._server = None
        self._listening.clear()
