"""The metrics as Prometheus itself sees them: promtool's lint, and a real server scraping the admin listener.

Skipped only where Prometheus is not installed locally; in CI (`tests/tools.py`) a missing one fails.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientError, ClientSession
from aiohttp.test_utils import unused_port

from gateway.app import admin_address
from tests.e2e.harness import Gateway, SupplierSpec
from tests.e2e.test_operations import admin_url
from tests.tools import need


@pytest.fixture
def needs_prometheus() -> None:
    need("prometheus", "promtool")


@pytest.mark.usefixtures("needs_prometheus")
async def test_promtool_finds_nothing_to_say_about_the_exposition(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    await d.shop.place(wait_seconds=5)
    async with ClientSession() as session, session.get(admin_url(d) + "/metrics") as response:
        exposition = await response.read()
    check = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await check.communicate(exposition)
    assert check.returncode == 0, output.decode()
    assert output.decode().strip() == ""


@pytest.mark.usefixtures("needs_prometheus")
async def test_a_real_prometheus_scrapes_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    for _ in range(3):
        await d.shop.place(wait_seconds=5)
    host, port = admin_address(d.app)
    web = unused_port()
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "gateway", "static_configs": [{"targets": [f"{host}:{port}"]}]}
                ],
            }
        )
    )
    server = await asyncio.create_subprocess_exec(
        "prometheus",
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{web}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = f"http://127.0.0.1:{web}/api/v1/query"
        async with ClientSession() as session, asyncio.timeout(30):
            while True:
                result = await _query(session, query, 'gateway_orders_total{status="succeeded"}')
                if result:
                    break
                await asyncio.sleep(0.5)
            assert float(result[0]["value"][1]) == 3
            assert result[0]["metric"]["product"] == "mobile.cmcc.50"
            up = await _query(session, query, 'gateway_supplier_up{supplier="fulu"}')
            assert float(up[0]["value"][1]) == 1
    finally:
        server.terminate()
        async with asyncio.timeout(15):
            await server.wait()


async def _query(session: ClientSession, url: str, expression: str) -> list[Any]:
    try:
        async with session.get(url, params={"query": expression}) as response:
            if response.status != 200:
                return []
            body = await response.json()
    except ClientError:
        return []  # still starting
    return list(body["data"]["result"])
