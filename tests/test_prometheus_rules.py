"""The alert rules in config/prometheus/: `promtool check rules` and their unit tests (`promtool test rules`
alerts.test.yml) pass, every alert says what to do, fires in a test, and has its runbook entry in README."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools import need

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "alerts.test.yml"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    need("promtool")
    return subprocess.run(
        ["promtool", *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_says_what_it_is_and_what_to_do() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        assert annotations["runbook"] == f"README.md#runbook: {rule['alert']}"
        assert len(annotations["description"]) > 80, rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warn"), rule["alert"]


def test_every_alert_fires_in_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {
        check["alertname"]
        for test in tests
        for check in test.get("alert_rule_test", [])
        if check["exp_alerts"]
    }
    quiet = {
        check["alertname"]
        for test in tests
        for check in test.get("alert_rule_test", [])
        if not check["exp_alerts"]
    }
    names = {rule["alert"] for rule in alerts()}
    assert fired == names
    assert quiet == names  # and is held back somewhere: before its `for`, or by its guard


def test_every_alert_has_a_runbook_entry_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    runbook = readme.partition("### Runbook")[2].partition("\n## ")[0]
    assert runbook, "README.md has no Runbook section"
    entries = re.findall(r"^- \*\*`(\w+)`\*\*", runbook, flags=re.MULTILINE)
    assert entries == [rule["alert"] for rule in alerts()]
