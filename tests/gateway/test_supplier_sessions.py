"""Each supplier's connection pool follows its max_concurrency, through reloads."""

from __future__ import annotations

import asyncio
import random

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from gateway.clock import ManualClock
from gateway.config.loader import parse_config
from gateway.metrics import Metrics
from gateway.ratelimit import MemoryRateState
from gateway.suppliers import Supplier, build_suppliers
from gateway.upstream import SupplierSessions, new_session

CONFIG = """
suppliers:
  wide:
    protocol: fulu
    base_url: "http://127.0.0.1:1"
    credentials: {{app_key: k, app_secret: s}}
    max_concurrency: {wide}
    timeout: {timeout}
  narrow:
    protocol: fulu
    base_url: "http://127.0.0.1:1"
    credentials: {{app_key: k, app_secret: s}}
    max_concurrency: 3
"""


def suppliers(wide: int, timeout: str = "100ms") -> dict[str, Supplier]:
    return build_suppliers(
        parse_config(CONFIG.format(wide=wide, timeout=timeout), {}),
        Metrics(),
        clock=ManualClock(),
        rng=random.Random(1),
        rate_state=MemoryRateState(),
    )


async def test_each_supplier_has_a_pool_the_size_of_its_max_concurrency() -> None:
    sessions = SupplierSessions()
    built = suppliers(wide=500)
    try:
        wide, narrow = sessions.of(built["wide"]), sessions.of(built["narrow"])
        assert wide is not narrow
        assert wide.connector is not None
        assert wide.connector.limit == 500
        assert narrow.connector is not None
        assert narrow.connector.limit == 3
        assert sessions.of(built["wide"]) is wide  # one per supplier, not one per request
    finally:
        await sessions.close()
    assert wide.closed
    assert narrow.closed


async def _closed_within(session: ClientSession, *, polls: int) -> bool:
    """Whether `session` is closed within `polls` looks, 50 ms apart."""
    for _ in range(polls):
        if session.closed:
            return True
        await asyncio.sleep(0.05)
    return session.closed


async def test_a_reload_that_changes_the_cap_gets_a_new_pool_and_retires_the_old_one() -> None:
    sessions = SupplierSessions(retire_grace_seconds=0.0)
    try:
        old = sessions.of(suppliers(wide=500)["wide"])
        new = sessions.of(suppliers(wide=20)["wide"])
        assert new is not old
        assert new.connector is not None
        assert new.connector.limit == 20
        assert not old.closed  # requests under way on it finish first
        assert await _closed_within(old, polls=200)  # once the supplier's timeout (and the grace) passed
    finally:
        await sessions.close()
    assert new.closed


async def test_a_retired_pool_outlives_the_longest_timeout_its_requests_were_given() -> None:
    sessions = SupplierSessions(retire_grace_seconds=0.0)
    try:
        old = sessions.of(suppliers(wide=500, timeout="1500ms")["wide"])
        sessions.of(suppliers(wide=20, timeout="50ms")["wide"])  # shorter: not what old requests had
        await asyncio.sleep(0.5)
        assert not old.closed  # a request sent just before the reload may run 1.5 s
        assert await _closed_within(old, polls=100)
    finally:
        await sessions.close()


async def test_suppliers_see_the_gateways_user_agent_not_aiohttps() -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("User-Agent", ""))

    app = web.Application()
    app.router.add_get("/", echo)
    async with TestServer(app) as server:
        session = new_session(2)
        try:
            async with session.get(server.make_url("/")) as response:
                assert await response.text() == "supplier-gateway/0.1"
        finally:
            await session.close()
