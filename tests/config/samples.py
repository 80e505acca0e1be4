"""Shared pieces of the config tests: a small valid configuration and a way to collect problems."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gateway.config.loader import ConfigError, parse_config


def valid() -> dict[str, Any]:
    """A small valid configuration that tests break one piece at a time."""
    return {
        "shops": {
            "demo": {"secret": "shop-secret-value", "products": ["mobile.*"], "notify_hosts": ["127.0.0.1"]}
        },
        "suppliers": {
            "fulu": {
                "protocol": "fulu",
                "base_url": "http://127.0.0.1:9101",
                "credentials": {"app_key": "key", "app_secret": "app-secret-value"},
            }
        },
        "products": {
            "mobile.cmcc.50": {
                "account": "mobile_cn",
                "face_value": "50",
                "offers": [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}],
            }
        },
    }


def problems(source: dict[str, Any] | str, environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    text = source if isinstance(source, str) else yaml.safe_dump(source, sort_keys=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, environ or {})
    return [(problem.path, problem.message) for problem in caught.value.problems]


def paths(source: dict[str, Any] | str, environ: dict[str, str] | None = None) -> list[str]:
    return [path for path, _ in problems(source, environ)]


def offer(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["products"]["mobile.cmcc.50"]["offers"][0]
    return result


def fulu(data: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = data["suppliers"]["fulu"]
    return result
