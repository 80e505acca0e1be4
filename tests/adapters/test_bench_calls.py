"""Smoke test of bench/adapter_calls.py: every protocol and operation timed and printed, a few calls each.

It checks that the micro-benchmark runs, prints every row and saves them; never how large a figure
is (the machine and whatever else runs on it decide that).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ("fulu", "ofpay", "juhe", "dayuanren")
OPERATIONS = ("build_submit", "parse_submit", "build_query", "parse_query", "parse_callback")


def run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "bench/adapter_calls.py", "--repeat", "1", "--number", "3", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_protocol_and_operation_is_timed_and_saved(tmp_path: Path) -> None:
    saved = tmp_path / "before.json"
    table = run("--save", str(saved))
    for protocol in PROTOCOLS:
        for operation in OPERATIONS:
            assert f"| {protocol} | {operation} |" in table
    figures = json.loads(saved.read_text())
    assert set(figures) == set(PROTOCOLS)
    assert all(set(operations) == set(OPERATIONS) for operations in figures.values())
    compared = run("--compare", str(saved))
    assert "after/before" in compared
    assert compared.count("\n| ") == len(PROTOCOLS) * len(OPERATIONS) + 1
