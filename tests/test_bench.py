"""Smoke test of bench/run.py: a tiny load through every row of the table, and the in-flight mode.

It checks that the bench runs, prints every requested row and sees no errors; never how large a
figure is (the machine and whatever else runs on it decide that). The Redis rows run where
redis-server exists, and must where tools are required (tests/tools.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import need, strict

ROOT = Path(__file__).resolve().parents[1]
ROWS = {
    "direct": "direct",
    "proxy": "proxy",
    "memory": "gateway memory",
    "sqlite": "gateway sqlite",
    "redis1": "gateway redis x1",
    "redis2": "gateway redis x2",
}

pytestmark = pytest.mark.slow


def run_bench(*args: str, timeout: float) -> str:
    result = subprocess.run(
        [sys.executable, "bench/run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def table_rows(output: str) -> dict[str, list[str]]:
    """The main table's rows by label: the first table after the header that starts with `side`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("side") and "CPU µs/o" in line)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        label = next((label for label in ROWS.values() if line.startswith(label + " ")), None)
        assert label is not None, f"a row nobody asked for: {line!r}"
        rows[label] = line[len(label) :].split()
    return rows


def test_table_prints_every_row_without_errors() -> None:
    sides = ["direct", "proxy", "memory", "sqlite"]
    if shutil.which("redis-server") is not None or strict():
        need("redis-server")
        sides += ["redis1", "redis2"]
    # A low paced rate: the Redis rows would otherwise spend seconds draining a queue nobody looks at.
    output = run_bench(
        "--seconds", "1", "--rounds", "1", "--rate", "50", "--sides", ",".join(sides), timeout=120
    )  # fmt: skip
    rows = table_rows(output)
    assert list(rows) == [ROWS[side] for side in sides]
    for label, cells in rows.items():
        assert len(cells) == 10, f"{label}: {cells}"
        assert cells[-1] == "0", f"{label} saw errors:\n{output}"
    # Each row's figures are numbers (or '-' where a baseline does not apply).
    for label, cells in rows.items():
        assert all(re.fullmatch(r"-|-?\d+(\.\d+)?x?", cell) for cell in cells), f"{label}: {cells}"


def test_inflight_has_no_errors() -> None:
    output = run_bench("--inflight", "50", "--answer-after", "0.5", timeout=60)
    errors = re.search(r"^errors\s+(\d+)", output, re.MULTILINE)
    assert errors is not None, output
    assert errors.group(1) == "0", output
    final = re.search(r"\((\d+) of (\d+) accepted final\)", output)
    assert final is not None, output
    assert final.group(1) == final.group(2) == "50", output
    for line in ("time to accept all", "gateway peak RSS", "peak connections to supplier"):
        assert line in output
