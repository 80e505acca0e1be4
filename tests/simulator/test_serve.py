"""`python -m gateway.simulator.serve`: a configuration's simulated suppliers in a process of their own."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from gateway.config.loader import parse_config
from gateway.simulator.serve import simulated_only
from tests.simulator.test_farm import free_port

CONFIG = """
suppliers:
  fulu:
    protocol: fulu
    base_url: http://127.0.0.1:{fulu}
    credentials: {{app_key: demo-app-key, app_secret: demo-app-secret}}
    simulate: {{latency: 0s}}
  juhe:
    protocol: juhe
    base_url: http://127.0.0.1:{juhe}
    credentials: {{key: demo-key, openid: demo-openid}}
    simulate: {{latency: 0s}}
  real:
    protocol: fulu
    base_url: http://127.0.0.1:1
    credentials: {{app_key: k, app_secret: s}}
products:
  mobile.cmcc.50:
    account: mobile_cn
    face_value: "50"
    offers:
      - {{supplier: fulu, sku: "18221081", cost: "49.30"}}
      - {{supplier: juhe, sku: "50", cost: "49.25"}}
      - {{supplier: real, sku: "1", cost: "49.40"}}
"""


def test_only_the_simulated_suppliers_asked_for_are_kept() -> None:
    config = parse_config(CONFIG.format(fulu=1, juhe=2), {})
    assert list(simulated_only(config, []).suppliers) == ["fulu", "juhe"]
    assert list(simulated_only(config, ["juhe"]).suppliers) == ["juhe"]
    with pytest.raises(ValueError, match="configuration: ghost, real; simulated: fulu, juhe"):
        simulated_only(config, ["real", "ghost"])


async def test_the_process_serves_until_sigterm(tmp_path: Path) -> None:
    fulu, juhe = free_port(), free_port()
    path = tmp_path / "simulators.yaml"
    path.write_text(CONFIG.format(fulu=fulu, juhe=juhe))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.simulator.serve", "-c", str(path), "--supplier", "juhe"
    )
    try:
        async with asyncio.timeout(20):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", juhe)
                except OSError:
                    assert process.returncode is None, "the simulators exited before listening"
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", fulu)  # not asked for
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
