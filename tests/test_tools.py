"""The switch that keeps CI honest: with it a missing tool or any skip fails the run; without it they skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import need, strict

ROOT = Path(__file__).resolve().parent.parent

SAMPLE = """
import pytest
from tests.tools import need

def test_needs_a_tool_nobody_has():
    need("no-such-tool-anywhere-7f3a")

def test_skips_for_its_own_reason():
    pytest.skip("not today")

def test_runs():
    assert True
"""


def run_sample(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_REQUIRE")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "-c",
            str(tmp_path / "pytest.ini"),
            str(tmp_path / "test_sample.py"),
        ],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_the_switch_missing_tools_skip(tmp_path: Path) -> None:
    result = run_sample(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 skipped" in result.stdout


@pytest.mark.parametrize("variable", ["GATEWAY_REQUIRE_TOOLS", "GATEWAY_REQUIRE_REDIS"])
def test_with_the_switch_every_skip_fails_the_run(tmp_path: Path, variable: str) -> None:
    result = run_sample(tmp_path, **{variable: "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed, 1 passed" in result.stdout
    assert "no-such-tool-anywhere-7f3a" in result.stdout
    assert "forbids skipping" in result.stdout


def test_the_switch_reads_only_a_set_value() -> None:
    assert not strict({})
    assert not strict({"GATEWAY_REQUIRE_TOOLS": "0"})
    assert strict({"GATEWAY_REQUIRE_TOOLS": "1"})
    with pytest.raises(pytest.fail.Exception):
        need("no-such-tool-anywhere-7f3a", environ={"GATEWAY_REQUIRE_TOOLS": "1"})
    with pytest.raises(pytest.skip.Exception):
        need("no-such-tool-anywhere-7f3a", environ={})
    need(Path(sys.executable).name if os.sep not in sys.executable else "sh")
