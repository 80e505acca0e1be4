"""The `gateway` command: check-config's report, and `gateway order` against a running gateway."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.cli import main
from tests.e2e.harness import Gateway, SupplierSpec

ROOT = Path(__file__).resolve().parents[2]

BROKEN = """
server: {listen: "nowhere", max_body_bytes: 10}
store: postgres://x
orders: {sync_wait: 2, max_attempts: 0}
shops:
  demo: {secret: s, products: ["nothing.*"]}
suppliers:
  fulu: {protocol: fulu, base_url: "http://127.0.0.1:9101", credentials: {app_key: k}}
  slow:
    protocol: fulu
    base_url: "http://127.0.0.1:9102"
    credentials: {app_key: k, app_secret: s}
    timeout: fast
products:
  mobile.cmcc.50:
    account: mobile_cn
    face_value: "50"
    offers: [{supplier: fullu, sku: "1", cost: "49.30"}]
  mobile.bad:
    account: phone
    face_value: "50.001"
    offers: [{supplier: fulu, sku: "1", cost: "49.30"}]
"""


def test_check_config_lists_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BROKEN)
    assert main(["check-config", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    for key in (
        "server.listen",
        "server.max_body_bytes",
        "store",
        "orders.sync_wait",
        "orders.max_attempts",
        "suppliers.slow.timeout",
        "suppliers.fulu.credentials.app_secret",
        'products["mobile.bad"].account',
        'products["mobile.bad"].face_value',
        'products["mobile.cmcc.50"].offers[0].supplier',
        "shops.demo.products",
    ):
        assert f"  {key}: " in err, (key, err)


def test_check_config_accepts_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(ROOT / "gateway.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(tmp_path / "absent.yaml")]) == 1
    assert "absent.yaml" in capsys.readouterr().err


async def test_gateway_order_signs_and_places_an_order(
    gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    path = tmp_path / "gateway.yaml"
    doc = yaml.safe_load((ROOT / "gateway.yaml").read_text())
    doc["shops"]["demo"]["secret"] = "demo-secret"
    path.write_text(yaml.safe_dump(doc))
    args = ["order", "-c", str(path), "--url", d.base_url]
    # main() runs its own event loop; run it in a thread so it does not nest in the test's loop.
    code = await asyncio.to_thread(main, [*args, "mobile.cmcc.50", "13800138000", "--order-id", "CLI-1"])
    assert code == 0
    placed = orjson.loads(capsys.readouterr().out)
    assert placed["order_id"] == "CLI-1"
    assert placed["status"] == "succeeded"
    code = await asyncio.to_thread(main, [*args, "--status", "CLI-1"])
    assert code == 0
    assert orjson.loads(capsys.readouterr().out)["status"] == "succeeded"


async def test_run_with_its_port_taken_fails_with_a_clear_error(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    doc = yaml.safe_load((ROOT / "gateway.yaml").read_text())
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    doc["admin"]["listen"] = "127.0.0.1:0"
    doc["store"] = f"sqlite:///{tmp_path}/gateway.db"
    doc["suppliers"] = {
        name: {k: v for k, v in supplier.items() if k != "simulate"}
        for name, supplier in doc["suppliers"].items()
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(path), stdout=PIPE, stderr=PIPE
        )
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    finally:
        taken.close()
    assert process.returncode == 1
    assert "cannot start" in err.decode()
    assert "Traceback" not in err.decode()


def _runnable_config(tmp_path: Path) -> Path:
    """The demo on free ports, with a store of its own and no simulated suppliers in the process."""
    doc = yaml.safe_load((ROOT / "gateway.yaml").read_text())
    doc["server"]["listen"] = "127.0.0.1:0"
    doc["admin"]["listen"] = "127.0.0.1:0"
    doc["store"] = f"sqlite:///{tmp_path}/gateway.db"
    doc["log"] = {"level": "info", "format": "json"}
    doc["suppliers"] = {
        name: {k: v for k, v in supplier.items() if k != "simulate"}
        for name, supplier in doc["suppliers"].items()
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("args", "environ", "expected"),
    [
        ([], {}, "uvloop"),
        (["--event-loop", "asyncio"], {}, "asyncio"),
        ([], {"GATEWAY_EVENT_LOOP": "asyncio"}, "asyncio"),
        (["--event-loop", "uvloop"], {"GATEWAY_EVENT_LOOP": "asyncio"}, "uvloop"),
    ],
)
async def test_run_serves_on_uvloop_unless_told_otherwise(
    tmp_path: Path, args: list[str], environ: dict[str, str], expected: str
) -> None:
    path = _runnable_config(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(path), *args,
        stdout=PIPE, stderr=PIPE, env={**os.environ, **environ},
    )  # fmt: skip
    assert process.stderr is not None  # the logs
    try:
        async with asyncio.timeout(30):
            while line := await process.stderr.readline():
                if b"gateway_listening" in line:
                    break
        assert orjson.loads(line)["event_loop"] == expected
    finally:
        process.terminate()
        async with asyncio.timeout(30):
            await process.communicate()
    assert process.returncode == 0


async def test_an_unknown_event_loop_is_refused_before_anything_starts(tmp_path: Path) -> None:
    path = _runnable_config(tmp_path)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(path),
        stdout=PIPE, stderr=PIPE, env={**os.environ, "GATEWAY_EVENT_LOOP": "tokio"},
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert "unknown event loop 'tokio'; choose one of uvloop, asyncio" in err.decode()
    assert not (tmp_path / "gateway.db").exists()


async def test_a_malformed_request_is_one_warning_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    doc = yaml.safe_load(_runnable_config(tmp_path).read_text())
    doc["server"]["listen"] = f"127.0.0.1:{port}"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(doc))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "-c", str(path), stdout=PIPE, stderr=PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"gateway_listening" not in await process.stderr.readline():
                pass
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
    finally:
        process.terminate()
        async with asyncio.timeout(30):
            _, rest = await process.communicate()
    assert answer.split(b" ", 2)[1] == b"400"
    assert b"Traceback" not in rest
    warnings = [orjson.loads(line) for line in rest.splitlines() if b"http_request_malformed" in line]
    assert [(w["level"], w["error"], w["status"]) for w in warnings] == [("warning", "LineTooLong", 400)]
