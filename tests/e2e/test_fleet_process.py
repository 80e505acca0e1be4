"""The `gateway run` process the e2e tests start: one that never listens is not left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.fleet import GatewayProcess, restartable_port
from tests.e2e.harness import SupplierSpec, config_yaml


@pytest.mark.slow
async def test_a_process_that_is_not_listening_in_time_is_killed(tmp_path: Path) -> None:
    listening, watched = restartable_port(), restartable_port()
    specs = {"fulu": SupplierSpec(url="http://127.0.0.1:9/")}  # never asked before the test ends
    config = tmp_path / "gateway.yaml"
    offers = [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}]
    config.write_text(config_yaml(listening, specs, offers))
    process = GatewayProcess(config, watched, tmp_path)  # waits on a port the gateway does not bind
    process.spawn()
    pid = process.pid

    with pytest.raises(TimeoutError, match=r"not listening after 1\.0s"):
        await process.ready(within=1.0)

    assert not process.running
    assert pid is not None
    with pytest.raises(ProcessLookupError):  # killed and reaped, not only forgotten
        os.kill(pid, 0)
