"""Replay across a restart: a real `gateway run` on a SQLite file, killed and restarted, still refuses a
signed request it has already seen (CONTRACT.md §1: a nonce is refused for the whole window).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import ClientSession, ClientTimeout

from tests.e2e.fleet import GatewayProcess, restartable_port, start_supplier
from tests.e2e.harness import Shop, SupplierSpec, config_yaml

OFFERS = [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}]
ORDER = {"order_id": "REPLAY-1", "product": "mobile.cmcc.50", "account": "13800138000", "wait_seconds": 0}


async def test_a_signed_request_replayed_after_a_kill_9_and_restart_is_401(tmp_path: Path) -> None:
    port = restartable_port()
    cleanups: list[Callable[[], Awaitable[None]]] = []
    process: GatewayProcess | None = None
    try:
        spec = SupplierSpec(knobs={"latency": 0.0, "result_after": 0.02, "success_rate": 1.0})
        simulator, spec.url = await start_supplier("fulu", spec, port, cleanups)
        config = tmp_path / "gateway.yaml"
        config.write_text(config_yaml(port, {"fulu": spec}, OFFERS, store=f"sqlite:///{tmp_path}/gateway.db"))
        process = GatewayProcess(config, port, tmp_path)
        await process.start()
        session = ClientSession(timeout=ClientTimeout(total=10))
        cleanups.append(session.close)
        shop = Shop(session, f"http://127.0.0.1:{port}")
        base = shop.base_url

        body = orjson.dumps(ORDER)
        post_headers = shop.headers("POST", "/v1/orders", body)
        get_path = f"/v1/orders/{ORDER['order_id']}"
        get_headers = shop.headers("GET", get_path, b"")
        async with session.post(base + "/v1/orders", data=body, headers=post_headers) as response:
            assert response.status == 201, await response.text()
        async with session.get(base + get_path, headers=get_headers) as response:
            assert response.status == 200, await response.text()

        # SIGKILL straight after the answers: nothing is flushed at exit, so only what was durable
        # before each request was acted on survives.
        process.kill()
        await process.start()

        async with session.post(base + "/v1/orders", data=body, headers=post_headers) as response:
            assert response.status == 401, await response.text()
            assert (await response.json())["error"] == {"code": "unauthenticated", "message": "nonce"}
        async with session.get(base + get_path, headers=get_headers) as response:
            assert response.status == 401, await response.text()
            assert (await response.json())["error"]["message"] == "nonce"
        # The same order freshly signed is still the one order, submitted once.
        status, placed = await shop.place(**ORDER)
        assert status == 200, placed
        assert len(simulator.ledger.entries()) == 1
        assert await process.stop() == 0
        assert process.troubles() == []
    finally:
        if process is not None and process.running:
            process.kill()
        for cleanup in reversed(cleanups):
            await cleanup()
