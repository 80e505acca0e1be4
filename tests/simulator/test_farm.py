"""The simulators a `gateway.yaml` starts: served at their base_url, through a listener a crash can stop."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from adapters.interface import AccountKind, Charge
from gateway.config.loader import parse_config
from gateway.simulation import SimulatorFarm
from gateway.simulator import Fault
from tests.simulator.conftest import PHONE, ConnectionLost, is_refused, is_reset, no_resend
from tests.simulator.protocols import FULU


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


CONFIG = """
suppliers:
  fulu:
    protocol: fulu
    base_url: http://127.0.0.1:{port}
    credentials: {{app_key: demo-app-key, app_secret: demo-app-secret}}
    simulate: {{latency: 0s, result_after: 10ms, crash_rate: 1, refuse_for: 100ms, seed: 3}}
products:
  mobile.cmcc.50:
    account: mobile_cn
    face_value: "50"
    offers: [{{supplier: fulu, sku: "18221081", cost: "49.30"}}]
"""


async def test_the_farm_serves_each_simulator_at_its_base_url_and_a_crash_stops_it() -> None:
    port = free_port()
    config = parse_config(CONFIG.format(port=port), {})
    knobs = config.suppliers["fulu"].simulate
    assert knobs is not None
    assert (knobs.crash_rate, knobs.refuse_for) == (1.0, 0.1)
    farm = SimulatorFarm(config)
    await farm.start()
    try:
        simulator = farm.simulators["fulu"]
        [listener] = simulator.listeners
        assert listener.url == f"http://127.0.0.1:{port}"
        adapter = FULU.adapter(listener.url)
        request = adapter.build_submit(
            Charge(
                upstream_order_id="G000000000000000000000000001",
                sku=FULU.sku,
                account=PHONE,
                account_kind=AccountKind.MOBILE_CN,
                face_value_cents=5000,
                quantity=1,
                max_cost_cents=FULU.max_cost_cents,
                callback_url="http://127.0.0.1:9/callbacks/fulu",
                timestamp=time.time(),
            )
        )
        async with aiohttp.ClientSession(middlewares=(no_resend,)) as session:
            with pytest.raises(ConnectionLost) as lost:
                await session.post(request.url, data=request.body, headers=dict(request.headers))
            assert is_reset(lost.value)
            with pytest.raises(aiohttp.ClientConnectorError) as refused:
                await session.post(request.url, data=request.body)
            assert is_refused(refused.value)
        async with asyncio.timeout(2):
            await listener.wait_listening()  # refuse_for is 100 ms of the real clock here
        assert len(simulator.ledger.with_fault(Fault.CRASH)) == 1
    finally:
        await farm.stop()
