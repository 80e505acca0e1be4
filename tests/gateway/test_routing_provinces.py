"""Offers that serve some provinces: `provinces` and `exclude_provinces` in planning, unknown provinces."""

from __future__ import annotations

import random

import pytest

from gateway.clock import ManualClock
from gateway.config.loader import parse_config
from gateway.config.model import GatewayConfig, OfferConfig
from gateway.metrics import Metrics
from gateway.mobile import Province
from gateway.ratelimit import MemoryRateState
from gateway.routing import Router, serves
from gateway.suppliers import build_suppliers

CONFIG = """
suppliers:
  east: {protocol: fulu, base_url: "http://127.0.0.1:1", credentials: {app_key: k, app_secret: s}}
  notbj: {protocol: fulu, base_url: "http://127.0.0.1:2", credentials: {app_key: k, app_secret: s}}
  all: {protocol: fulu, base_url: "http://127.0.0.1:3", credentials: {app_key: k, app_secret: s}}
products:
  mobile.cheapest:
    account: mobile_cn
    face_value: "50"
    routing: cheapest
    offers:
      - {supplier: east, sku: "1", cost: "49.10", provinces: [江苏, 浙江]}
      - {supplier: notbj, sku: "1", cost: "49.20", exclude_provinces: [北京]}
      - {supplier: all, sku: "1", cost: "49.30"}
  mobile.east:
    account: mobile_cn
    face_value: "50"
    offers:
      - {supplier: east, sku: "1", cost: "49.10", provinces: [江苏, 浙江]}
"""

J, Z, B, X = Province.JIANGSU, Province.ZHEJIANG, Province.BEIJING, Province.XINJIANG


def setup() -> tuple[Router, GatewayConfig]:
    config = parse_config(CONFIG, {})
    clock = ManualClock()
    rng = random.Random(7)
    suppliers = build_suppliers(config, Metrics(), clock=clock, rng=rng, rate_state=MemoryRateState())
    return Router(suppliers, rng, clock), config


def names(offers: list[OfferConfig]) -> list[str]:
    return [o.supplier for o in offers]


@pytest.mark.parametrize(
    ("province", "expected"),
    [
        (J, ["east", "notbj", "all"]),
        (Z, ["east", "notbj", "all"]),
        (B, ["all"]),
        (X, ["notbj", "all"]),
        # Unknown: a `provinces` list cannot be said to hold it; an exclusion list does not exclude it.
        (None, ["notbj", "all"]),
    ],
)
def test_plan_leaves_out_offers_that_do_not_serve_the_province(
    province: Province | None, expected: list[str]
) -> None:
    router, config = setup()

    assert names(router.plan(config.products["mobile.cheapest"], province=province)) == expected


def test_failover_plans_keep_to_the_province() -> None:
    router, config = setup()
    product = config.products["mobile.cheapest"]

    assert names(router.plan(product, tried={"east"}, province=J)) == ["notbj", "all"]
    assert router.plan(product, tried={"all"}, province=B) == []


def test_no_offer_serving_the_province_plans_nothing() -> None:
    router, config = setup()
    product = config.products["mobile.east"]

    assert names(router.plan(product, province=Z)) == ["east"]
    assert router.plan(product, province=B) == []
    assert router.plan(product, province=None) == []


def test_serves_a_listed_province_any_not_excluded_or_every_one() -> None:
    _, config = setup()
    east, not_beijing, everywhere = config.products["mobile.cheapest"].offers

    assert all(serves(everywhere, p) for p in [*Province, None])
    assert [p for p in Province if not serves(not_beijing, p)] == [B]
    assert [p for p in Province if serves(east, p)] == [J, Z]
