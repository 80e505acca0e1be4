"""Reloading gateway.yaml while running: applied in one step, or refused whole with every problem."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession
from aiohttp.test_utils import unused_port

from gateway.app import admin_address
from tests.e2e.harness import Deployment, Gateway, SupplierSpec

AUTH = {"Authorization": "Bearer admin-token"}


def edit(d: Deployment, change: Any) -> None:
    path = d.runtime.config_path
    assert path is not None
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


async def reload(d: Deployment) -> tuple[int, Any]:
    host, port = admin_address(d.app)
    async with (
        ClientSession() as session,
        session.post(f"http://{host}:{port}/admin/reload", headers=AUTH) as r,
    ):
        return r.status, await r.json()


async def test_a_reload_changes_routing_products_and_shops_at_once(gateway: Gateway, tmp_path: Path) -> None:
    d = await gateway({"a": SupplierSpec(), "b": SupplierSpec()}, config_dir=tmp_path)
    _, before = await d.shop.place(order_id="R-1", wait_seconds=5)
    assert [a["supplier"] for a in before["attempts"]] == ["a"]

    def change(doc: Any) -> None:
        offers = doc["products"]["mobile.cmcc.50"]["offers"]
        offers[0]["priority"], offers[1]["priority"] = 2, 1
        doc["products"]["mobile.cmcc.100"] = {
            "account": "mobile_cn",
            "face_value": "100",
            "offers": [{"supplier": "a", "sku": "18221082", "cost": "98.60"}],
        }

    edit(d, change)
    status, body = await reload(d)
    assert (status, body["status"], body["restart_required"]) == (200, "reloaded", [])
    _, after = await d.shop.place(order_id="R-2", wait_seconds=5)
    assert [a["supplier"] for a in after["attempts"]] == ["b"]
    status, new = await d.shop.place(order_id="R-3", product="mobile.cmcc.100", wait_seconds=5)
    assert (status, new["status"], new["delivered_value"]) == (201, "succeeded", "100")


async def test_an_invalid_file_is_refused_and_the_running_configuration_stays(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway({"a": SupplierSpec()}, config_dir=tmp_path)

    def break_it(doc: Any) -> None:
        doc["orders"]["max_attempts"] = 0
        doc["products"]["mobile.cmcc.50"]["offers"][0]["supplier"] = "nobody"

    edit(d, break_it)
    status, body = await reload(d)
    assert status == 400
    assert body["error"]["code"] == "invalid_config"
    assert {detail["field"] for detail in body["error"]["details"]} == {
        "orders.max_attempts",
        'products["mobile.cmcc.50"].offers[0].supplier',
    }
    _, order = await d.shop.place(wait_seconds=5)
    assert order["status"] == "succeeded"
    assert d.runtime.config.orders.max_attempts == 3


async def test_a_suppliers_protocol_cannot_change_while_running(gateway: Gateway, tmp_path: Path) -> None:
    d = await gateway({"a": SupplierSpec()}, config_dir=tmp_path)

    def change(doc: Any) -> None:
        doc["suppliers"]["a"]["protocol"] = "juhe"
        doc["suppliers"]["a"]["credentials"] = {"key": "k", "openid": "o"}

    edit(d, change)
    status, body = await reload(d)
    assert status == 400
    assert [detail["field"] for detail in body["error"]["details"]] == ["suppliers.a.protocol"]
    assert d.runtime.suppliers["a"].config.protocol == "fulu"


async def test_a_removed_supplier_still_settles_its_orders(gateway: Gateway, tmp_path: Path) -> None:
    d = await gateway(
        {"old": SupplierSpec(knobs={"callback_drop_rate": 1.0}), "new": SupplierSpec()}, config_dir=tmp_path
    )
    _, order = await d.shop.place(order_id="OLD-1", wait_seconds=2)
    assert order["attempts"][0]["supplier"] == "old"

    def drop_old(doc: Any) -> None:
        del doc["suppliers"]["old"]
        doc["products"]["mobile.cmcc.50"]["offers"] = [
            o for o in doc["products"]["mobile.cmcc.50"]["offers"] if o["supplier"] != "old"
        ]

    edit(d, drop_old)
    assert (await reload(d))[0] == 200
    assert d.runtime.suppliers["old"].retired
    _, next_order = await d.shop.place(order_id="NEW-1", wait_seconds=5)
    assert [a["supplier"] for a in next_order["attempts"]] == ["new"]
    d.clock.advance(60)
    await d.runtime.reconciler.sweep()  # the retired supplier is still queried for its order
    assert (await d.shop.get("OLD-1"))[1]["status"] == "succeeded"


async def test_what_needs_a_restart_is_reported_and_an_operators_switch_survives(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway({"a": SupplierSpec(), "b": SupplierSpec()}, config_dir=tmp_path)
    d.runtime.suppliers["a"].set_disabled(True)

    def change(doc: Any) -> None:
        doc["server"]["max_body_bytes"] = 4096
        doc["log"]["level"] = "info"

    edit(d, change)
    status, body = await reload(d)
    assert (status, body["restart_required"]) == (200, ["server", "log"])
    assert d.runtime.suppliers["a"].disabled  # the file did not touch it


async def test_sighup_reloads_a_running_gateway(tmp_path: Path) -> None:
    port, admin, sim = unused_port(), unused_port(), unused_port()
    path = tmp_path / "gateway.yaml"
    doc: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
        "admin": {"listen": f"127.0.0.1:{admin}", "token": "admin-token"},
        "store": f"sqlite:///{tmp_path}/gateway.db",
        "shops": {"demo": {"secret": "s", "products": ["mobile.*"]}},
        "suppliers": {
            "fulu": {
                "protocol": "fulu",
                "base_url": f"http://127.0.0.1:{sim}",
                "credentials": {"app_key": "k", "app_secret": "s"},
                "simulate": {"latency": "0s"},
            }
        },
        "products": {
            "mobile.cmcc.50": {
                "account": "mobile_cn",
                "face_value": "50",
                "offers": [{"supplier": "fulu", "sku": "1", "cost": "49.30"}],
            }
        },
    }
    path.write_text(yaml.safe_dump(doc))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "run",
        "-c",
        str(path),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with ClientSession() as session:
            url = f"http://127.0.0.1:{admin}/admin/suppliers"

            async def disabled() -> bool | None:
                try:
                    async with session.get(url, headers=AUTH) as response:
                        return bool((await response.json())["suppliers"][0]["disabled"])
                except OSError:
                    return None

            await until(lambda state: state is not None, disabled, within=20)
            assert await disabled() is False
            doc["suppliers"]["fulu"]["disabled"] = True
            path.write_text(yaml.safe_dump(doc))
            process.send_signal(signal.SIGHUP)
            await until(lambda state: state is True, disabled, within=10)
    finally:
        process.terminate()
        async with asyncio.timeout(15):
            await process.wait()


async def until(
    holds: Callable[[bool | None], bool], probe: Callable[[], Awaitable[bool | None]], within: float
) -> None:
    """Poll `probe` until `holds`, failing the test after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if holds(await probe()):
                return
            await asyncio.sleep(0.05)


def fields(body: Any) -> list[str]:
    return [detail["field"] for detail in body["error"]["details"]]


async def test_a_supplier_with_open_attempts_keeps_its_base_url_and_credentials(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway({"a": SupplierSpec(knobs={"callback_drop_rate": 1.0})}, config_dir=tmp_path)
    _, order = await d.shop.place(order_id="OPEN-1", wait_seconds=2)
    [attempt] = order["attempts"]
    assert (order["status"], attempt["outcome"]) == ("processing", "processing")
    url = d.runtime.suppliers["a"].config.base_url

    def move(doc: Any) -> None:
        doc["suppliers"]["a"]["base_url"] = "http://127.0.0.1:2"

    edit(d, move)
    status, body = await reload(d)
    assert status == 400
    assert body["error"]["code"] == "invalid_config"
    assert fields(body) == ["suppliers.a.base_url"]
    message = body["error"]["details"][0]["message"]
    assert 'supplier "a" has 1 open attempt(s)' in message
    assert attempt["upstream_order_id"] in message
    assert d.runtime.suppliers["a"].config.base_url == url  # the running configuration stays

    def rotate(doc: Any) -> None:
        doc["suppliers"]["a"]["credentials"]["app_secret"] = "rotated-secret"

    edit(d, rotate)  # on top of the move: both are refused, each under its own key
    status, body = await reload(d)
    assert (status, fields(body)) == (400, ["suppliers.a.base_url", "suppliers.a.credentials"])

    def tune(doc: Any) -> None:
        doc["suppliers"]["a"]["base_url"] = url
        doc["suppliers"]["a"]["credentials"]["app_secret"] = "demo-app-secret"
        doc["suppliers"]["a"]["rate_limit"] = {"rate": 5, "per": "1s", "burst": 1}
        doc["suppliers"]["a"]["timeout"] = "3s"
        doc["suppliers"]["a"]["codes"] = {"3006": "not_executed"}

    edit(d, tune)  # everything else still reloads
    assert (await reload(d))[0] == 200
    assert d.runtime.suppliers["a"].config.timeout == 3.0

    d.clock.advance(60)
    await d.runtime.reconciler.sweep()  # the supplier says how the attempt ended
    assert (await d.shop.get("OPEN-1"))[1]["status"] == "succeeded"
    edit(d, move)
    status, body = await reload(d)
    assert status == 200, body
    assert d.runtime.suppliers["a"].config.base_url == "http://127.0.0.1:2"


async def test_an_attempt_still_being_sent_keeps_its_suppliers_base_url(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway({"a": SupplierSpec(knobs={"hang_rate": 1.0}, timeout="1s")}, config_dir=tmp_path)
    _, order = await d.shop.place(order_id="HUNG-1", wait_seconds=0)
    [attempt] = order["attempts"]
    assert attempt["outcome"] == "unknown"  # recorded before the submit left, still under way

    def move(doc: Any) -> None:
        doc["suppliers"]["a"]["base_url"] = "http://127.0.0.1:2"

    edit(d, move)
    status, body = await reload(d)
    assert (status, fields(body)) == (400, ["suppliers.a.base_url"])
    assert attempt["upstream_order_id"] in body["error"]["details"][0]["message"]
    assert d.runtime.suppliers["a"].config.base_url != "http://127.0.0.1:2"


async def test_a_retired_supplier_comes_back_under_another_protocol_only_once_settled(
    gateway: Gateway, tmp_path: Path
) -> None:
    d = await gateway(
        {"old": SupplierSpec(knobs={"callback_drop_rate": 1.0}), "new": SupplierSpec()}, config_dir=tmp_path
    )
    _, order = await d.shop.place(order_id="OLD-1", wait_seconds=2)
    [attempt] = order["attempts"]
    assert (attempt["supplier"], attempt["outcome"]) == ("old", "processing")
    path = d.runtime.config_path
    assert path is not None
    original = yaml.safe_load(path.read_text())

    def drop_old(doc: Any) -> None:
        del doc["suppliers"]["old"]
        doc["products"]["mobile.cmcc.50"]["offers"] = [
            o for o in doc["products"]["mobile.cmcc.50"]["offers"] if o["supplier"] != "old"
        ]

    edit(d, drop_old)
    assert (await reload(d))[0] == 200
    assert d.runtime.suppliers["old"].retired

    def readd_as_juhe(doc: Any) -> None:
        doc["suppliers"]["old"] = {
            **original["suppliers"]["old"],
            "protocol": "juhe",
            "credentials": {"key": "k", "openid": "o"},
        }

    edit(d, readd_as_juhe)
    status, body = await reload(d)
    assert (status, fields(body)) == (400, ["suppliers.old.protocol", "suppliers.old.credentials"])
    assert attempt["upstream_order_id"] in body["error"]["details"][0]["message"]
    assert d.runtime.suppliers["old"].retired
    assert d.runtime.suppliers["old"].config.protocol == "fulu"

    d.clock.advance(60)
    await d.runtime.reconciler.sweep()  # still read as fulu, the protocol it was sent in
    assert (await d.shop.get("OLD-1"))[1]["status"] == "succeeded"
    status, body = await reload(d)
    assert status == 200, body
    assert d.runtime.suppliers["old"].config.protocol == "juhe"
    assert not d.runtime.suppliers["old"].retired
