"""A simulated supplier of any protocol on a real socket, driven by that protocol's real adapter.

A test module names its protocol by overriding the `protocol` fixture (or parametrizing it).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from adapters.interface import (
    AccountKind,
    AdapterSettings,
    BadSignature,
    Charge,
    HttpReply,
    HttpRequest,
    InboundCallback,
    MalformedMessage,
    SupplierAdapter,
    SupplierReply,
)
from adapters.registry import adapter_factory
from gateway.clock import Clock
from gateway.config.model import SimulateConfig
from gateway.simulator import Listener, Simulator, build_simulator
from gateway.simulator.front import Front
from gateway.simulator.front import HttpReply as FrontReply
from gateway.simulator.front import HttpRequest as FrontRequest
from gateway.simulator.registry import front_factory

PHONE: Final = "13800138000"


class ConnectionLost(aiohttp.ClientConnectionError):
    """A reset or disconnect as the test client saw it, without aiohttp's silent second send."""


async def no_resend(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """aiohttp re-sends a GET once after a reset (juhe and ofpay submit by GET), which would hide
    the reset from a test and submit the order twice; this ends the request with the reset instead."""
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise  # a refused connect is never re-sent, and keeps its type
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as error:
        raise ConnectionLost(str(error)) from error


def is_reset(error: object) -> bool:
    """A connection reset by the peer (RST), not a clean close, as the test client reports it."""
    cause = error.__cause__ if isinstance(error, ConnectionLost) else None
    return isinstance(cause, aiohttp.ClientOSError) and cause.errno == errno.ECONNRESET


def is_refused(error: object) -> bool:
    """A connect that found no listener."""
    return isinstance(error, aiohttp.ClientConnectorError) and error.os_error.errno == errno.ECONNREFUSED


QUICK: Final[Mapping[str, Any]] = {"latency": 0.0, "result_after": 0.005, "success_rate": 1.0, "seed": 7}


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedProtocol:
    """What the tests of one protocol need: whose credentials, and what a default charge buys."""

    name: str
    credentials: Mapping[str, str]
    sku: str
    max_cost_cents: int

    def adapter(self, base_url: str, credentials: Mapping[str, str] | None = None) -> SupplierAdapter:
        settings = AdapterSettings(
            name=self.name,
            base_url=base_url,
            credentials=self.credentials if credentials is None else credentials,
        )
        return adapter_factory(self.name)(settings)

    def front(self, credentials: Mapping[str, str] | None = None) -> Front:
        return front_factory(self.name)(self.credentials if credentials is None else credentials)


class GatewayStub:
    """The gateway's callback endpoint, reduced to verifying with the adapter and acknowledging."""

    def __init__(self, adapter: SupplierAdapter, path: str) -> None:
        self.adapter = adapter
        self.replies: list[SupplierReply] = []
        self.accepted: list[InboundCallback] = []  # as received, in step with `replies`
        self.received: list[tuple[str, bytes]] = []  # (Content-Type, body) of every callback
        self.rejected = 0
        self.fail_next = 0  # answer this many callbacks with 500 first
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post(path, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.headers.get("Content-Type", ""), body))
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="busy")
        callback = InboundCallback(
            method=request.method, query=dict(request.query), content_type=request.content_type, body=body
        )
        try:
            reply = self.adapter.parse_callback(callback)
        except (BadSignature, MalformedMessage):
            self.rejected += 1
            self._wake()
            return web.Response(status=401, text="bad signature")
        self.replies.append(reply)
        self.accepted.append(callback)
        self._wake()
        ack = self.adapter.acknowledge()
        return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def callbacks(self, count: int) -> list[SupplierReply]:
        """Wait until `count` callbacks have been accepted (bounded by the test's timeout)."""
        async with asyncio.timeout(2.0):
            while len(self.replies) < count:
                await self._changed.wait()
        return self.replies


@dataclass
class Supplier:
    """One simulated supplier, an adapter pointed at it and a stub gateway it calls back.

    `callback_url` is the stub's: every charge carries it, and protocols without a notify URL in
    their requests have the simulator configured with it instead.
    """

    protocol: SimulatedProtocol
    simulator: Simulator
    adapter: SupplierAdapter
    gateway: GatewayStub
    callback_url: str
    session: aiohttp.ClientSession
    listener: Listener
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"G{next(self.ids):027d}01"

    def url(self, path: str, **params: str) -> str:
        url = self.listener.url + path
        return f"{url}?{urlencode(params)}" if params else url

    def adapter_with(self, credentials: Mapping[str, str]) -> SupplierAdapter:
        """An adapter pointed at this simulator that signs with other credentials."""
        return self.protocol.adapter(self.url(""), credentials)

    async def send(self, request: HttpRequest | FrontRequest, timeout_seconds: float = 2.0) -> HttpReply:
        """Sends a request the adapter built or the simulator's front wrote (a callback, sent by hand)."""
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with self.session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body or None,
            timeout=timeout,
        ) as response:
            return HttpReply(
                status=response.status, headers=dict(response.headers), body=await response.read()
            )

    def charge(self, upstream_order_id: str, **changes: Any) -> Charge:
        fields: dict[str, Any] = {
            "upstream_order_id": upstream_order_id,
            "sku": self.protocol.sku,
            "account": PHONE,
            "account_kind": AccountKind.MOBILE_CN,
            "face_value_cents": 5000,
            "quantity": 1,
            "max_cost_cents": self.protocol.max_cost_cents,
            "callback_url": self.callback_url,
            "timestamp": time.time(),
        }
        return Charge(**(fields | changes))

    async def submit(
        self, upstream_order_id: str | None = None, adapter: SupplierAdapter | None = None, **changes: Any
    ) -> SupplierReply:
        adapter = adapter or self.adapter
        upstream_order_id = upstream_order_id or self.new_id()
        reply = await self.send(adapter.build_submit(self.charge(upstream_order_id, **changes)))
        return adapter.parse_submit(upstream_order_id, reply)

    async def query(self, upstream_order_id: str, adapter: SupplierAdapter | None = None) -> SupplierReply:
        return (await self.query_many([upstream_order_id], adapter))[upstream_order_id]

    async def query_many(
        self, upstream_order_ids: Sequence[str], adapter: SupplierAdapter | None = None
    ) -> Mapping[str, SupplierReply]:
        adapter = adapter or self.adapter
        request = adapter.build_query(upstream_order_ids, time.time())
        return adapter.parse_query(upstream_order_ids, await self.send(request))


def as_received(answer: FrontReply) -> HttpReply:
    """A front's reply as the gateway's adapter receives it: the two sides share no types."""
    return HttpReply(status=answer.status, headers=dict(answer.headers), body=answer.body)


MakeSupplier = Callable[..., Awaitable[Supplier]]


@pytest.fixture
async def make_supplier(aiohttp_server: Any, protocol: SimulatedProtocol) -> AsyncIterator[MakeSupplier]:
    """Builds suppliers of `protocol`: knobs by keyword over `QUICK`.

    `credentials` replace the protocol's everywhere; `gateway_credentials` only the stub gateway's,
    which then refuses the simulator's callbacks. The simulator listens through `Simulator.serve`,
    as the gateway's own farm serves it, so a crash can stop it listening.
    """
    sessions: list[aiohttp.ClientSession] = []
    listeners: list[Listener] = []

    async def make(
        *,
        clock: Clock | None = None,
        catalog: Mapping[str, int] | None = None,
        credentials: Mapping[str, str] | None = None,
        gateway_credentials: Mapping[str, str] | None = None,
        callback_attempts: int = 5,
        **knobs: Any,
    ) -> Supplier:
        credentials = protocol.credentials if credentials is None else credentials
        path = f"/callbacks/{protocol.name}"
        stub = GatewayStub(
            protocol.adapter(
                "http://unused", credentials if gateway_credentials is None else gateway_credentials
            ),
            path,
        )
        stub_server = await aiohttp_server(stub.app)
        callback_url = str(stub_server.make_url(path))
        # Where requests carry a notify URL the simulator gets none, so callbacks can only follow it.
        carries_notify_url = protocol.front(credentials).carries_notify_url
        simulator = build_simulator(
            protocol.name,
            credentials=credentials,
            knobs=SimulateConfig(**{**QUICK, **knobs}),
            callback_url=None if carries_notify_url else callback_url,
            clock=clock,
            catalog=catalog,
            callback_attempts=callback_attempts,
            callback_retry_seconds=0.01,
        )
        listener = await simulator.serve("127.0.0.1")
        listeners.append(listener)
        session = aiohttp.ClientSession(middlewares=(no_resend,))
        sessions.append(session)
        return Supplier(
            protocol=protocol,
            simulator=simulator,
            adapter=protocol.adapter(listener.url, credentials),
            gateway=stub,
            callback_url=callback_url,
            session=session,
            listener=listener,
        )

    yield make
    for session in sessions:
        await session.close()
    for listener in listeners:
        await listener.close()
