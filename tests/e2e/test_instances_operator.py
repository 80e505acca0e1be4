"""An operator's disable / enable on one instance holds for every instance on the store (CONTRACT.md §6).

Real gateways on real sockets sharing one Redis (a server and a Cluster), before two simulated
suppliers: `a` first, `b` behind it. Switches made elsewhere arrive within about a second, so the
tests poll the other instance's `/admin/suppliers`, bounded, instead of waiting a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession

from gateway.simulator import Simulator
from tests.e2e.fleet import restartable_port
from tests.e2e.harness import Deployment, Gateway, SupplierSpec, start_simulator
from tests.e2e.test_operations import admin_url
from tests.redis_servers import RedisServer

AUTH = {"Authorization": "Bearer admin-token"}
WITHIN_SECONDS = 10.0


class Fleet:
    """Gateways on one store before the same two simulated suppliers, which call back to the first."""

    def __init__(self, gateway: Gateway, store: str) -> None:
        self.gateway = gateway
        self.store = store
        self.port = restartable_port()
        self.simulators: dict[str, Simulator] = {}
        self.specs: dict[str, SupplierSpec] = {}
        self.cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start_suppliers(self) -> None:
        for name in ("a", "b"):  # the default offers: `a` at priority 1, `b` at 2
            simulator, url = await start_simulator(name, SupplierSpec(), self.port, self.cleanups)
            self.simulators[name] = simulator
            self.specs[name] = SupplierSpec(url=url)

    async def instance(self, *, first: bool = False) -> Deployment:
        return await self.gateway(self.specs, store=self.store, port=self.port if first else None)

    async def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            await cleanup()


@pytest.fixture
async def fleet(gateway: Gateway, redis_url: str) -> AsyncIterator[Fleet]:
    started = Fleet(gateway, redis_url)
    await started.start_suppliers()
    yield started
    await started.close()


async def switch(d: Deployment, supplier: str, action: str, operator: str | None = None) -> tuple[int, Any]:
    headers = dict(AUTH)
    if operator is not None:
        headers["X-Operator"] = operator
    async with (
        ClientSession() as session,
        session.post(f"{admin_url(d)}/admin/suppliers/{supplier}/{action}", headers=headers) as response,
    ):
        return response.status, await response.json()


async def disabled(d: Deployment) -> dict[str, bool]:
    """What the instance's `/admin/suppliers` says of each supplier's switch."""
    async with (
        ClientSession() as session,
        session.get(admin_url(d) + "/admin/suppliers", headers=AUTH) as response,
    ):
        assert response.status == 200
        body = await response.json()
    return {view["name"]: view["disabled"] for view in body["suppliers"]}


async def until_disabled(d: Deployment, expected: dict[str, bool]) -> None:
    """Poll the instance's admin listing until it shows `expected` (bounded: fails the test otherwise)."""
    async with asyncio.timeout(WITHIN_SECONDS):
        while True:
            if await disabled(d) == expected:
                return
            await asyncio.sleep(0.05)


async def served_by(d: Deployment, order_id: str) -> list[str]:
    """Place an order on `d` and wait for it to succeed (its callback may reach another instance)."""
    status, order = await d.shop.place(order_id=order_id, wait_seconds=0)
    assert status == 201, order
    order = await d.shop.wait_for(order_id, lambda o: o["status"] != "processing", within=WITHIN_SECONDS)
    assert order["status"] == "succeeded", order
    return [attempt["supplier"] for attempt in order["attempts"]]


async def test_a_disable_on_one_instance_holds_on_the_other_and_an_enable_there_holds_back(
    fleet: Fleet,
) -> None:
    first, second = await fleet.instance(first=True), await fleet.instance()
    assert await served_by(second, "BEFORE") == ["a"]

    status, body = await switch(first, "a", "disable", operator="")
    assert (status, body["error"]["code"]) == (400, "invalid_request")  # a nameless operator: nothing done
    assert await disabled(first) == {"a": False, "b": False}

    status, view = await switch(first, "a", "disable", operator="alice")
    assert (status, view["name"], view["disabled"], view["routable"]) == (200, "a", True, False)
    await until_disabled(second, {"a": True, "b": False})
    submits_to_a = len(fleet.simulators["a"].ledger)
    for n in range(3):
        assert await served_by(second, f"ON-SECOND-{n}") == ["b"]
        assert await served_by(first, f"ON-FIRST-{n}") == ["b"]
    assert len(fleet.simulators["a"].ledger) == submits_to_a  # the disabled supplier got nothing more

    status, view = await switch(second, "a", "enable")
    assert (status, view["disabled"]) == (200, False)
    await until_disabled(first, {"a": False, "b": False})
    assert await served_by(first, "AFTER") == ["a"]
    assert len(fleet.simulators["a"].ledger) == submits_to_a + 1


async def test_a_restarted_instance_picks_up_the_switch_from_redis(fleet: Fleet) -> None:
    first, second = await fleet.instance(first=True), await fleet.instance()
    assert (await switch(second, "a", "disable", operator="bob"))[0] == 200
    await second.stop()
    # Same file, same store: a restart. The switch applies before the new instance serves anything.
    restarted = await fleet.instance()
    assert await disabled(restarted) == {"a": True, "b": False}
    submits_to_a = len(fleet.simulators["a"].ledger)
    assert await served_by(restarted, "RESTARTED") == ["b"]
    assert len(fleet.simulators["a"].ledger) == submits_to_a
    await until_disabled(first, {"a": True, "b": False})  # the one that ran on: at its next read


async def test_redis_down_the_switch_is_refused_with_503_and_nothing_changes(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    fleet = Fleet(gateway, redis_server.url)
    try:
        await fleet.start_suppliers()
        first, second = await fleet.instance(first=True), await fleet.instance()
        assert (await switch(first, "a", "disable"))[0] == 200
        await until_disabled(second, {"a": True, "b": False})

        redis_server.stop()
        status, body = await switch(first, "a", "enable", operator="alice")
        assert (status, body["error"]["code"]) == (503, "store_unavailable")
        status, body = await switch(second, "b", "disable")
        assert (status, body["error"]["code"]) == (503, "store_unavailable")
        # Nothing applied anywhere, and the instances keep the switches they knew.
        assert await disabled(first) == {"a": True, "b": False}
        assert await disabled(second) == {"a": True, "b": False}

        redis_server.start()  # unpersisted: the switches it held are gone, which changes nothing
        assert (await switch(second, "a", "enable"))[0] == 200
        await until_disabled(first, {"a": False, "b": False})
        assert await disabled(second) == {"a": False, "b": False}
    finally:
        await fleet.close()
