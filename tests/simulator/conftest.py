"""A fulu simulator on a real socket, driven by the real FuluAdapter, calling back a stub gateway."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.fulu import FuluAdapter
from adapters.interface import (
    AccountKind,
    AdapterSettings,
    BadSignature,
    Charge,
    HttpReply,
    HttpRequest,
    InboundCallback,
    MalformedMessage,
    SupplierReply,
)
from gateway.clock import Clock
from gateway.config.model import SimulateConfig
from gateway.simulator import Simulator, build_simulator

CREDENTIALS = {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}
QUICK = {"latency": 0.0, "result_after": 0.005, "success_rate": 1.0, "seed": 7}


class GatewayStub:
    """The gateway's callback endpoint, reduced to verifying with the adapter and acknowledging."""

    def __init__(self, adapter: FuluAdapter) -> None:
        self.adapter = adapter
        self.replies: list[SupplierReply] = []
        self.rejected = 0
        self.fail_next = 0  # answer this many callbacks with 500 first
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/callbacks/fulu", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="busy")
        callback = InboundCallback(
            method=request.method, query=dict(request.query), content_type=request.content_type,
            body=await request.read(),
        )  # fmt: skip
        try:
            reply = self.adapter.parse_callback(callback)
        except (BadSignature, MalformedMessage):
            self.rejected += 1
            return web.Response(status=401, text="bad signature")
        self.replies.append(reply)
        self._changed.set()
        self._changed = asyncio.Event()
        ack = self.adapter.acknowledge()
        return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)

    async def callbacks(self, count: int) -> list[SupplierReply]:
        """Wait until `count` callbacks have been accepted (bounded by the test's timeout)."""
        async with asyncio.timeout(2.0):
            while len(self.replies) < count:
                await self._changed.wait()
        return self.replies


@dataclass
class Supplier:
    """One simulated fulu supplier, an adapter pointed at it and a stub gateway it calls back."""

    simulator: Simulator
    adapter: FuluAdapter
    gateway: GatewayStub
    session: aiohttp.ClientSession
    server: TestServer
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"G{next(self.ids):027d}01"

    async def send(self, request: HttpRequest, timeout_seconds: float = 2.0) -> HttpReply:
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with self.session.request(
            request.method, request.url, headers=dict(request.headers), data=request.body, timeout=timeout
        ) as response:
            return HttpReply(
                status=response.status, headers=dict(response.headers), body=await response.read()
            )

    def charge(self, upstream_order_id: str, **changes: Any) -> Charge:
        fields: dict[str, Any] = {
            "upstream_order_id": upstream_order_id,
            "sku": "18221081",
            "account": "13800138000",
            "account_kind": AccountKind.MOBILE_CN,
            "face_value_cents": 5000,
            "quantity": 1,
            "max_cost_cents": 4930,
            "callback_url": "",
            "timestamp": time.time(),
        }
        return Charge(**(fields | changes))

    async def submit(self, upstream_order_id: str | None = None, **changes: Any) -> SupplierReply:
        upstream_order_id = upstream_order_id or self.new_id()
        reply = await self.send(self.adapter.build_submit(self.charge(upstream_order_id, **changes)))
        return self.adapter.parse_submit(upstream_order_id, reply)

    async def query(self, upstream_order_id: str) -> SupplierReply:
        request = self.adapter.build_query([upstream_order_id], time.time())
        return self.adapter.parse_query([upstream_order_id], await self.send(request))[upstream_order_id]


MakeSupplier = Callable[..., Awaitable[Supplier]]


def fulu_adapter(base_url: str, credentials: Mapping[str, str] = CREDENTIALS) -> FuluAdapter:
    return FuluAdapter(AdapterSettings(name="fulu", base_url=base_url, credentials=credentials))


@pytest.fixture
async def make_supplier(aiohttp_server: Any) -> AsyncIterator[MakeSupplier]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *, clock: Clock | None = None, catalog: Mapping[str, int] | None = None, **knobs: Any
    ) -> Supplier:
        stub = GatewayStub(fulu_adapter("http://unused"))
        stub_server = await aiohttp_server(stub.app)
        simulator = build_simulator(
            "fulu",
            credentials=CREDENTIALS,
            knobs=SimulateConfig(**(QUICK | knobs)),
            callback_url=str(stub_server.make_url("/callbacks/fulu")),
            clock=clock,
            catalog=catalog,
            callback_retry_seconds=0.01,
        )
        server = await aiohttp_server(simulator.app)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Supplier(
            simulator=simulator,
            adapter=fulu_adapter(str(server.make_url(""))),
            gateway=stub,
            session=session,
            server=server,
        )

    yield make
    for session in sessions:
        await session.close()
