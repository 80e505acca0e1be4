"""A simulator whose ledger forgets settled orders keeps working: what it still sends stays sound."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from gateway.simulator import Ledger
from tests.simulator.conftest import MakeSupplier, SimulatedProtocol
from tests.simulator.protocols import FULU


@pytest.fixture
def protocol() -> SimulatedProtocol:
    return FULU


async def test_a_callback_retried_after_its_entry_was_forgotten_is_still_sent(
    make_supplier: MakeSupplier, aiohttp_server: Any
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()
    received: list[bytes] = []

    async def callback(request: web.Request) -> web.Response:
        received.append(await request.read())
        arrived.set()
        if len(received) == 1:  # the first order's first callback fails, once the second has settled
            await release.wait()
            return web.Response(status=500)
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/callbacks/fulu", callback)
    server = await aiohttp_server(app)
    url = str(server.make_url("/callbacks/fulu"))
    supplier = await make_supplier()
    simulator = supplier.simulator
    simulator.ledger = ledger = Ledger(max_settled=1)
    simulator.callback_url = url
    first, second = supplier.new_id(), supplier.new_id()

    await supplier.submit(first, callback_url=url)
    async with asyncio.timeout(2):
        await arrived.wait()
        await supplier.submit(second, callback_url=url)
        await ledger.wait_for(lambda book: first not in book)
        release.set()
        await simulator.idle()  # re-raises what failed in a callback task

    assert ledger.forgotten == 1
    assert len(received) == 3  # the first order's callback was retried, and acknowledged
    assert ledger[second].callbacks_acknowledged == 1
