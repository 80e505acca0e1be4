"""Fixtures for end-to-end tests: deployments that clean up after themselves, and a shop notify endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e.harness import Gateway, ShopEndpoint, deploy


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    cleanups: list[Callable[[], Awaitable[None]]] = []
    yield partial(deploy, cleanups)
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def shop_endpoint() -> AsyncIterator[tuple[ShopEndpoint, str]]:
    endpoint = ShopEndpoint()
    app = web.Application()
    app.router.add_post("/hook", endpoint.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield endpoint, str(server.make_url("/hook"))
    await server.close()
