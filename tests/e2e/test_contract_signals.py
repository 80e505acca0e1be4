"""SIGHUP against a real `gateway run` process (CONTRACT.md §4): an invalid file is refused with its
errors in the log, and the running configuration stays; a valid one is then applied."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import ClientError, ClientSession

from tests.e2e.fleet import ROOT, restartable_port, start_supplier
from tests.e2e.harness import FULU_CREDENTIALS, Shop, SupplierSpec

AUTH = {"Authorization": "Bearer admin-token"}
SHOP_SECRET = "sighup-shop-secret"


def config(port: int, admin: int, supplier_url: str, db: Path) -> dict[str, Any]:
    return {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": "admin-token"},
        "store": f"sqlite:///{db}",
        "orders": {"sync_wait": "0s"},
        "log": {"level": "info", "format": "json"},
        "shops": {"demo": {"secret": SHOP_SECRET, "products": ["mobile.*"]}},
        "suppliers": {
            "fulu": {"protocol": "fulu", "base_url": supplier_url, "credentials": dict(FULU_CREDENTIALS)}
        },
        "products": {
            "mobile.cmcc.50": {
                "account": "mobile_cn",
                "face_value": "50",
                "offers": [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}],
            }
        },
    }


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            found.append(doc)
    return found


async def until(probe: Callable[[], Awaitable[Any]], holds: Callable[[Any], bool], within: float) -> Any:
    async with asyncio.timeout(within):
        while True:
            value = await probe()
            if holds(value):
                return value
            await asyncio.sleep(0.05)


async def test_sighup_with_an_invalid_file_is_refused_and_the_running_configuration_stays(
    tmp_path: Path,
) -> None:
    port, admin = restartable_port(), restartable_port()
    cleanups: list[Callable[[], Awaitable[None]]] = []
    simulator, supplier_url = await start_supplier(
        "fulu",
        SupplierSpec(knobs={"latency": 0.0, "result_after": 0.02, "success_rate": 1.0}),
        port,
        cleanups,
    )
    path, log = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    good = config(port, admin, supplier_url, tmp_path / "gateway.db")
    path.write_text(yaml.safe_dump(good))
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "-c",
            str(path),
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    try:
        async with ClientSession() as session:
            shop = Shop(session, f"http://127.0.0.1:{port}", secret=SHOP_SECRET)

            async def fulu() -> dict[str, Any] | None:
                try:
                    async with session.get(f"http://127.0.0.1:{admin}/admin/suppliers", headers=AUTH) as r:
                        return dict((await r.json())["suppliers"][0])
                except (ClientError, OSError):
                    return None  # still starting

            assert (await until(fulu, lambda view: view is not None, within=20))["disabled"] is False
            _, order = await shop.place(order_id="BEFORE", wait_seconds=5)
            assert order["status"] == "succeeded", order

            broken = copy.deepcopy(good)
            broken["suppliers"]["fulu"]["disabled"] = True  # valid on its own: must not apply either
            broken["orders"]["max_attempts"] = 0
            broken["products"]["mobile.cmcc.50"]["offers"][0]["supplier"] = "nobody"
            path.write_text(yaml.safe_dump(broken))
            process.send_signal(signal.SIGHUP)

            async def refusals() -> list[dict[str, Any]]:
                return log_events(log, "config_reload_refused")

            [refusal] = await until(refusals, bool, within=10)
            assert refusal["level"] == "error"
            said = "\n".join(refusal["problems"])
            assert "orders.max_attempts" in said, said
            assert 'products["mobile.cmcc.50"].offers[0].supplier' in said, said
            assert "nobody" in said, said

            assert process.returncode is None  # still running
            assert (await fulu() or {})["disabled"] is False  # the running configuration stays
            _, order = await shop.place(order_id="AFTER", wait_seconds=5)
            assert order["status"] == "succeeded", order
            assert [a["supplier"] for a in order["attempts"]] == ["fulu"]
            assert log_events(log, "config_reloaded") == []

            # The same signal with a valid file is applied: the refusal was the file's, not the signal's.
            fixed = copy.deepcopy(good)
            fixed["suppliers"]["fulu"]["disabled"] = True
            path.write_text(yaml.safe_dump(fixed))
            process.send_signal(signal.SIGHUP)
            await until(fulu, lambda view: view is not None and view["disabled"] is True, within=10)
            assert len(log_events(log, "config_reloaded")) == 1
            assert len(simulator.ledger.charges()) == 2
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(15):
            await process.wait()
        for cleanup in reversed(cleanups):
            await cleanup()
    assert process.returncode == 0, log.read_text()[-3000:]
