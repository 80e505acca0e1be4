"""The generated JSON Schema: checked in and fresh, and saying what the loader enforces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.config.schema import MONEY_PATTERN, json_schema, main, schema_text
from gateway.duration import parse_duration
from gateway.money import InvalidMoney, parse_money

CHECKED_IN = Path(__file__).parents[2] / "config" / "gateway.schema.json"


def test_checked_in_schema_is_fresh() -> None:
    stale = not CHECKED_IN.exists() or CHECKED_IN.read_text(encoding="utf-8") != schema_text()

    assert not stale, (
        "config/gateway.schema.json differs from the model; regenerate it with: "
        "python -m gateway.config.schema > config/gateway.schema.json"
    )


def test_main_prints_the_schema_with_a_trailing_newline(capsys: pytest.CaptureFixture[str]) -> None:
    main()

    printed = capsys.readouterr().out
    assert printed == schema_text()
    assert printed.endswith("}\n")


def test_schema_is_draft_2020_12_of_a_closed_object() -> None:
    schema = json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "required" not in schema


def _objects(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found.extend(_objects(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_objects(item))
    return found


def test_every_section_refuses_unknown_keys() -> None:
    objects = _objects(json_schema())

    assert len(objects) >= 12
    assert all(obj["additionalProperties"] is False for obj in objects)


def test_required_keys_match_the_contract() -> None:
    definitions = json_schema()["$defs"]

    assert definitions["SupplierConfig"]["required"] == ["protocol", "base_url", "credentials"]
    assert definitions["ProductConfig"]["required"] == ["account", "face_value", "offers"]
    assert definitions["OfferConfig"]["required"] == ["supplier", "sku", "cost"]
    assert definitions["ShopConfig"]["required"] == ["secret"]


def test_defaults_are_written_as_in_yaml() -> None:
    schema = json_schema()
    definitions = schema["$defs"]

    assert definitions["OrdersConfig"]["properties"]["sync_wait"]["default"] == "2s"
    assert definitions["OrdersConfig"]["properties"]["manual_review_after"]["default"] == "24h"
    assert definitions["RateLimitConfig"]["properties"]["max_wait"]["default"] == "250ms"
    assert definitions["RateLimitConfig"]["properties"]["rate"]["default"] == 100
    assert definitions["ProductConfig"]["properties"]["routing"]["default"] == "priority"
    assert definitions["SupplierConfig"]["properties"]["simulate"]["default"] is None
    assert definitions["SupplierConfig"]["properties"]["codes"]["default"] == {}
    assert schema["properties"]["notify"]["default"]["backoff"] == {"initial": "5s", "max": "1h"}
    assert schema["properties"]["admin"]["default"]["token"] == ""


def test_markers_become_schema_keywords() -> None:
    schema = json_schema()
    definitions = schema["$defs"]
    product = definitions["ProductConfig"]["properties"]

    assert product["account"]["anyOf"][0] == {"enum": ["mobile_cn", "qq", "game", "any"]}
    assert product["offers"]["minItems"] == 1
    assert product["max_quantity"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 100}
    assert product["face_value"]["$ref"] == "#/$defs/Money"
    assert product["face_value"]["description"] == "must be at least 0.01"
    breaker = definitions["BreakerConfig"]["properties"]
    assert breaker["failure_rate"]["exclusiveMinimum"] == 0
    assert breaker["open_for"]["$ref"] == "#/$defs/Duration"
    assert schema["properties"]["products"]["propertyNames"] == {"pattern": "^(?:[A-Za-z0-9_.-]{1,64})$"}
    assert definitions["ServerConfig"]["properties"]["listen"]["description"] == (
        "Shop API and supplier callbacks listener; must be host:port, e.g. 0.0.0.0:8080"
    )
    assert definitions["SimulateConfig"]["description"].startswith("Demo and test only")


@pytest.mark.parametrize(
    "text",
    ["0", "50", "49.30", "49.3", "0.01", "999999999999.99", "", "-1", "49.301", "1e3", "01", " 1", "٣"],
)
def test_money_pattern_accepts_what_parse_money_accepts(text: str) -> None:
    try:
        parse_money(text)
    except InvalidMoney:
        accepted = False
    else:
        accepted = True

    assert (re.search(MONEY_PATTERN, text) is not None) is accepted


@pytest.mark.parametrize("text", ["250ms", "2s", "1.5s", "5m", "24h", "2", "2 s", "-1s", "1d", ".5s", "٣s"])
def test_duration_pattern_accepts_what_the_loader_accepts(text: str) -> None:
    pattern = json_schema()["$defs"]["Duration"]["pattern"]
    try:
        parse_duration(text)
    except ValueError:
        accepted = False
    else:
        accepted = True

    assert (re.search(pattern, text) is not None) is accepted


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("ServerConfig", "listen"),
        ("OrdersConfig", "sync_wait"),
        ("OfferConfig", "cost"),
        ("LogConfig", "level"),
    ],
)
def test_values_may_hold_environment_references(section: str, key: str) -> None:
    schema = json_schema()
    value = schema["$defs"][section]["properties"][key]
    if "$ref" in value:
        value = schema["$defs"][value["$ref"].removeprefix("#/$defs/")]
    patterns = [value.get("pattern")] + [arm.get("pattern") for arm in value.get("anyOf", [])]

    assert any(pattern and re.search(pattern, "${NAME:-default}") for pattern in patterns)
