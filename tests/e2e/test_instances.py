"""Two gateway instances on one Redis behave as one gateway (CONTRACT.md §6), on a server and a Cluster.

Both instances are real gateways on real sockets sharing one store URL and one simulated supplier:
an order id sent to both at once is one order and one submit. Two `gateway run` processes keep
one supplier's limit together, measured at the supplier.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession

from gateway.simulator import Simulator
from tests.e2e.fleet import GatewayProcess, restartable_port, start_supplier
from tests.e2e.harness import (
    SEND_JITTER_SECONDS,
    Deployment,
    Gateway,
    Shop,
    SupplierSpec,
    config_yaml,
    start_simulator,
)
from tests.e2e.test_admin_orders import Admin
from tests.e2e.test_callbacks import callback_body
from tests.e2e.test_operations import admin_url, scrape
from tests.redis_servers import RedisServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


QUIET: Final = {"result_after": "1h", "callback_drop_rate": 1.0}  # accepts, then never says more


async def two_instances(
    gateway: Gateway,
    redis_url: str,
    supplier: dict[str, Any] | None = None,
    *,
    knobs: dict[str, Any] | None = None,
    orders: dict[str, Any] | None = None,
) -> tuple[list[Deployment], Simulator, list[Callable[[], Awaitable[None]]]]:
    """Two gateways on `redis_url` before one fulu simulator (with `knobs`), which calls back to the first."""
    first_port = _free_port()
    cleanups: list[Callable[[], Awaitable[None]]] = []
    simulator, url = await start_simulator("fulu", SupplierSpec(knobs=knobs or {}), first_port, cleanups)
    spec = SupplierSpec(url=url, extra=supplier or {})
    instances = [
        await gateway({"fulu": spec}, store=redis_url, port=first_port, orders=orders),
        await gateway({"fulu": spec}, store=redis_url, orders=orders),
    ]
    return instances, simulator, cleanups


async def test_one_order_id_sent_to_every_instance_at_once_is_one_order_and_one_submit(
    gateway: Gateway, redis_url: str
) -> None:
    instances, simulator, cleanups = await two_instances(gateway, redis_url)
    try:
        for round_ in range(3):
            order_id = f"SAME-{round_}"
            answers = await asyncio.gather(
                *(d.shop.place(order_id=order_id, wait_seconds=2) for d in instances for _ in range(10))
            )
            statuses = sorted(status for status, _ in answers)
            assert statuses == [200] * 19 + [201], answers
            assert {body["order_id"] for _, body in answers} == {order_id}
        assert len(simulator.ledger) == 3
        assert simulator.ledger.duplicates() == []
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


@pytest.mark.slow
async def test_a_supplier_limit_holds_for_two_gateway_processes_together(
    redis_url: str, tmp_path: Path
) -> None:
    """Two `gateway run` processes on one Redis, one supplier limited to 20/s + 5: it never sees more."""
    ports = [restartable_port(), restartable_port()]
    cleanups: list[Callable[[], Awaitable[None]]] = []
    processes: list[GatewayProcess] = []
    try:
        knobs = {"latency": 0.0, "result_after": 0.02, "success_rate": 1.0}
        simulator, url = await start_supplier("fulu", SupplierSpec(knobs=knobs), ports[0], cleanups)
        limit = {
            "rate_limit": {"rate": 20, "per": "1s", "burst": 5, "max_wait": "10s"},
            "max_concurrency": 500,
        }
        specs = {"fulu": SupplierSpec(url=url, extra=limit)}
        offers = [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}]
        for number, port in enumerate(ports):
            folder = tmp_path / f"instance-{number}"
            folder.mkdir()
            config = folder / "gateway.yaml"
            config.write_text(config_yaml(port, specs, offers, store=redis_url))
            process = GatewayProcess(config, port, folder)
            await process.start()
            processes.append(process)
        session = ClientSession()
        cleanups.append(session.close)
        shops = [Shop(session, f"http://127.0.0.1:{port}") for port in ports]
        placed = await asyncio.gather(
            *(shops[n % 2].place(order_id=f"RATE-{n:03d}", wait_seconds=0) for n in range(90))
        )
        assert all(status == 201 for status, _ in placed), placed
        for n in range(90):
            order = await shops[n % 2].wait_for(
                f"RATE-{n:03d}", lambda o: o["status"] != "processing", within=20
            )
            assert order["status"] == "succeeded", order
        # The limit is kept where requests are admitted, on Redis's clock. The burst admitted at once
        # leaves a gateway a few milliseconds after its admission (one after the other), the next
        # request on time: the supplier's windows allow 50 ms for that. 90 orders are more than
        # 3 s of the limit, so the pace decides, not only the burst.
        assert simulator.requests.max_in_window(1.0 - SEND_JITTER_SECONDS) <= 25
        assert simulator.requests.max_in_window(3.0 - SEND_JITTER_SECONDS) <= 20 * 3 + 5
        for process in processes:
            assert process.troubles() == []
    finally:
        for process in processes:
            await process.stop()
        for cleanup in reversed(cleanups):
            await cleanup()


async def test_redis_down_refuses_with_503_and_the_gateway_comes_back_by_itself(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    """CONTRACT §6: not ready, 503 store_unavailable with Retry-After, callbacks refused with a
    non-2xx (the supplier retries), nothing sent; when Redis is back, orders flow again."""
    d = await gateway({"fulu": SupplierSpec()}, store=redis_server.url)
    status, order = await d.shop.place(order_id="BEFORE", wait_seconds=3)
    assert (status, order["status"]) == (201, "succeeded")
    submits = len(d.simulators["fulu"].ledger)
    admin = admin_url(d)

    assert (await scrape(d))["gateway_store_up", ()] == 1
    redis_server.stop()
    status, body, headers = await d.shop.post_raw(
        b'{"order_id": "DOWN", "product": "mobile.cmcc.50", "account": "13800138000"}'
    )
    assert (status, body["error"]["code"]) == (503, "store_unavailable")
    assert int(headers["Retry-After"]) > 0
    async with ClientSession() as session:
        async with session.get(admin + "/readyz") as response:
            assert response.status == 503
        callback = callback_body(order["attempts"][0]["upstream_order_id"])
        async with session.post(f"{d.base_url}/callbacks/fulu", data=callback) as response:
            assert response.status == 503  # not acknowledged: the supplier will call again
    assert (await scrape(d))["gateway_store_up", ()] == 0
    assert len(d.simulators["fulu"].ledger) == submits  # nothing left without its attempt recorded

    redis_server.start()
    status, order = await d.shop.place(order_id="AFTER", wait_seconds=3)
    assert (status, order["status"]) == (201, "succeeded")
    async with ClientSession() as session, session.get(admin + "/readyz") as response:
        assert response.status == 200
    assert (await scrape(d))["gateway_store_up", ()] == 1


async def test_admin_suppliers_says_which_instance_answered(gateway: Gateway, redis_url: str) -> None:
    instances, _, cleanups = await two_instances(gateway, redis_url)
    try:
        seen = []
        for d in instances:
            async with (
                ClientSession() as session,
                session.get(
                    admin_url(d) + "/admin/suppliers", headers={"Authorization": "Bearer admin-token"}
                ) as response,
            ):
                body = await response.json()
            seen.append(body["instance"]["id"])
            assert body["instance"]["store"] == redis_url  # no password in it to mask here
            assert [s["name"] for s in body["suppliers"]] == ["fulu"]
        assert len(set(seen)) == 2
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


async def test_each_due_order_is_queried_by_one_instance_and_a_silent_claim_passes_on(
    gateway: Gateway, redis_url: str
) -> None:
    """Both instances sweep at the same moment: every due order is queried once, by one of them. An
    instance that claimed orders and then went silent (died) holds them only until its claims end."""
    orders = {"reconcile_after": "10s", "reconcile_every": "20s"}
    instances, _, cleanups = await two_instances(gateway, redis_url, knobs=QUIET, orders=orders)
    try:
        for i in range(30):
            status, body = await instances[i % 2].shop.place(order_id=f"CLAIM-{i}", wait_seconds=0)
            assert (status, body["status"]) == (201, "processing")
        for i in range(30):  # every submit answered before the clock moves

            def accepted(order: dict[str, Any]) -> bool:
                return bool(order["attempts"][-1]["outcome"] == "processing")

            await instances[0].shop.wait_for(f"CLAIM-{i}", accepted)

        async def sweep_both() -> list[int]:
            reports = await asyncio.gather(*(d.runtime.reconciler.sweep() for d in instances))
            return [report.queried for report in reports]

        def advance(seconds: float) -> None:
            for d in instances:
                d.clock.advance(seconds)

        advance(11)  # past reconcile_after: every order is due
        assert sum(await sweep_both()) == 30
        assert sum(await sweep_both()) == 0  # claimed: nobody asks again before the claims end
        # Past the claims (half of reconcile_every) and the next looks the answers scheduled (as long
        # after the answer): still processing, so due again.
        advance(15)
        first_died = await instances[1].runtime.reconciler.sweep()
        assert first_died.queried == 30
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


async def test_an_order_finished_elsewhere_is_never_answered_from_a_stale_memory(
    gateway: Gateway, redis_url: str
) -> None:
    """Placed on the first instance, settled by an operator on the second while the shop waits: the
    first answers with what the store holds, not with the processing order it saved itself."""
    (first, second), _, cleanups = await two_instances(gateway, redis_url, knobs=QUIET)
    try:
        placing = asyncio.ensure_future(first.shop.place(order_id="STALE-1", wait_seconds=3))
        async with asyncio.timeout(5):  # until the order exists and its supplier accepted it
            while True:
                status, seen = await second.shop.get("STALE-1")
                if status == 200 and seen["attempts"][-1]["outcome"] == "processing":
                    break
                await asyncio.sleep(0.02)

        resolved, view = await Admin(second).resolve("STALE-1", {"status": "failed", "note": "checked"})
        assert (resolved, view["status"]) == (200, "failed")

        status, answered = await placing
        assert (status, answered["status"], answered["reason"]) == (201, "failed", "resolved_by_operator")
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


async def test_every_instance_reports_the_stores_count_of_open_orders(
    gateway: Gateway, redis_url: str
) -> None:
    """An order placed on one instance and settled on the other leaves neither counting it."""
    instances, _, cleanups = await two_instances(gateway, redis_url, knobs=QUIET)
    try:
        for order_id in ("COUNT-1", "COUNT-2"):
            status, _ = await instances[0].shop.place(order_id=order_id, wait_seconds=0)
            assert status == 201
        resolved, _ = await Admin(instances[1]).resolve("COUNT-1", {"status": "failed", "note": "checked"})
        assert resolved == 200

        awaiting = ("gateway_orders_processing", (("reason", "awaiting_supplier"),))
        assert [(await scrape(d))[awaiting] for d in instances] == [1.0, 1.0]
    finally:
        for cleanup in reversed(cleanups):
            await cleanup()


async def test_an_order_held_on_one_instance_is_resubmitted_from_the_other(
    gateway: Gateway, redis_url: str
) -> None:
    """Hold and resubmit (CONTRACT §10) on a shared store: every offer refused through the first
    instance, the order waits held; the operator enables a supplier and resubmits on the second."""
    hold = {"when_exhausted": "hold", "hold_for": "10m"}
    suppliers = {"bad": SupplierSpec(knobs={"refuse_rate": 1.0}), "good": SupplierSpec()}
    first = await gateway(suppliers, store=redis_url, orders=hold)
    await Admin(first).switch("good", on=False)  # held for every instance: the order meets only "bad"
    status, placed = await first.shop.place(order_id="HELD-1", wait_seconds=3)
    assert (status, placed["status"], placed["reason"]) == (201, "processing", "held")

    second = await gateway(suppliers, store=redis_url, orders=hold)
    await Admin(second).switch("good", on=True)
    status, resubmitted = await Admin(second).call(
        "POST",
        "/admin/orders/demo/HELD-1/resubmit",
        orjson.dumps({"supplier": "good", "note": "channel back"}),
    )
    assert status == 202, resubmitted
    done = await first.shop.wait_for("HELD-1", lambda o: o["status"] != "processing")
    assert done["status"] == "succeeded"
    attempts = [(a["supplier"], a["outcome"]) for a in done["attempts"]]
    assert attempts[-1] == ("good", "succeeded")
    assert {supplier for supplier, _ in attempts[:-1]} == {"bad"}
    assert all(outcome in ("failed", "not_executed") for _, outcome in attempts[:-1])
    assert len(second.simulators["good"].ledger) + len(first.simulators["good"].ledger) == 1
