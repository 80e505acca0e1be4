"""The Grafana dashboard in config/grafana/ and the alert rules name only series the running gateway exports.

A gateway is started with the e2e harness (real sockets) and its /metrics scraped; a series it declares
(`# HELP`/`# TYPE`) counts even before its first sample, as the balance gauges are until a balance is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession

from tests.e2e.harness import Gateway, SupplierSpec, deploy
from tests.e2e.test_operations import admin_url

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "gateway.json"
RULES = ROOT / "config" / "prometheus" / "alerts.yml"
# Series Prometheus makes itself, not the gateway.
PROMETHEUS_OWN = frozenset({"up"})
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")
PROMQL_FUNCTIONS = frozenset(
    {
        "sum", "min", "max", "rate", "increase", "histogram_quantile", "time", "by", "on", "and", "unless",
        "or", "without", "predict_linear", "label_values", "avg", "count",
    }
)  # fmt: skip


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """As tests/e2e's fixture: deployments that clean up after themselves."""
    cleanups: list[Callable[[], Awaitable[None]]] = []
    yield partial(deploy, cleanups)
    for cleanup in reversed(cleanups):
        await cleanup()


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_expressions() -> list[str]:
    panels = [p for p in dashboard()["panels"] if p["type"] != "row"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    exprs += [v["definition"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def series_in(expr: str) -> set[str]:
    """The series an expression reads: identifiers that are neither functions, keywords nor label names."""
    without_matchers = re.sub(r"\{[^}]*\}", "{}", expr)  # label names and values
    without_groupings = re.sub(r"\b(by|on|without)\s*\([^)]*\)", "", without_matchers)  # label lists
    without_strings = re.sub(r'"[^"]*"', '""', without_groupings)
    without_strings = re.sub(r"label_values\(([^,]+),\s*\w+\s*\)", r"\1", without_strings)  # Grafana's
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", without_strings))
    names -= PROMQL_FUNCTIONS
    return {name for name in names if not re.fullmatch(r"[0-9]+[smhd]?|e|le", name)}


def exported_by(text: str) -> set[str]:
    """Every series name of a scrape: declared families and their samples (histograms' parts too)."""
    names = set()
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            family = line.split()[2]
            names.add(family)
            if line.startswith("# TYPE ") and line.split()[3] == "histogram":
                names.update(family + part for part in HISTOGRAM_PARTS)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_series_names_are_read_from_expressions() -> None:
    expr = (
        'min by (supplier) (gateway_supplier_balance{supplier=~"$supplier"}) / on (supplier)'
        " (sum by (supplier) (rate(gateway_order_cost_total[1h])) * 3600) and up == 0"
    )

    assert series_in(expr) == {"gateway_supplier_balance", "gateway_order_cost_total", "up"}
    assert series_in("label_values(gateway_orders_total, product)") == {"gateway_orders_total"}


async def test_every_series_in_the_dashboard_and_the_rules_is_exported(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    _, order = await d.shop.place(order_id="M-1", wait_seconds=5)
    assert order["status"] == "succeeded"
    async with ClientSession() as session, session.get(admin_url(d) + "/metrics") as response:
        assert response.status == 200
        exported = exported_by(await response.text())

    used = {name for expr in [*dashboard_expressions(), *rule_expressions()] for name in series_in(expr)}

    assert used - PROMETHEUS_OWN
    assert used - PROMETHEUS_OWN <= exported, sorted(used - PROMETHEUS_OWN - exported)
    # the two that are absent until a balance is read are declared all the same
    assert {"gateway_supplier_balance", "gateway_supplier_balance_checked_timestamp_seconds"} <= exported


def test_the_dashboard_is_templated_by_supplier_and_product() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert {"datasource", "supplier", "product"} <= set(variables)
    exprs = dashboard_expressions()
    assert any('supplier=~"$supplier"' in e for e in exprs)
    assert any('product=~"$product"' in e for e in exprs)
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_dashboard_has_the_rows_the_readme_describes() -> None:
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert rows == [
        "Orders",
        "Suppliers",
        "Money",
        "Waiting for a person",
        "Notifications and callbacks",
        "Gateway",
    ]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for row in rows:
        assert f"**{row}**" in readme, row
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
