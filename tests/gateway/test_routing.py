"""Offer planning: priority with weighted ties, weighted, cheapest; unroutable and tried suppliers skipped."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

from gateway.clock import ManualClock
from gateway.config.loader import parse_config
from gateway.config.model import GatewayConfig, OfferConfig
from gateway.metrics import Metrics
from gateway.ratelimit import MemoryRateState
from gateway.routing import Router
from gateway.suppliers import Supplier, build_suppliers

CONFIG = """
suppliers:
  a: {protocol: fulu, base_url: "http://127.0.0.1:1", credentials: {app_key: k, app_secret: s}}
  b: {protocol: fulu, base_url: "http://127.0.0.1:2", credentials: {app_key: k, app_secret: s}}
  c: {protocol: fulu, base_url: "http://127.0.0.1:3", credentials: {app_key: k, app_secret: s}}
products:
  p.priority:
    account: any
    face_value: "50"
    offers:
      - {supplier: a, sku: "1", cost: "49.30", priority: 1, weight: 3}
      - {supplier: b, sku: "1", cost: "49.25", priority: 1, weight: 1}
      - {supplier: c, sku: "1", cost: "49.50", priority: 2}
  p.weighted:
    account: any
    face_value: "50"
    routing: weighted
    offers:
      - {supplier: a, sku: "1", cost: "49.30", weight: 1}
      - {supplier: b, sku: "1", cost: "49.25", weight: 0}
      - {supplier: c, sku: "1", cost: "49.50", weight: 4}
  p.cheapest:
    account: any
    face_value: "50"
    routing: cheapest
    offers:
      - {supplier: a, sku: "1", cost: "49.30"}
      - {supplier: b, sku: "1", cost: "49.25"}
      - {supplier: c, sku: "1", cost: "49.50"}
"""


def setup() -> tuple[Router, Mapping[str, Supplier], GatewayConfig]:
    config = parse_config(CONFIG, {})
    clock = ManualClock()
    rng = random.Random(7)
    suppliers = build_suppliers(config, Metrics(), clock=clock, rng=rng, rate_state=MemoryRateState())
    return Router(suppliers, rng, clock), suppliers, config


def names(offers: list[OfferConfig]) -> list[str]:
    return [o.supplier for o in offers]


def test_priority_groups_in_order_with_weighted_ties() -> None:
    router, _, config = setup()
    product = config.products["p.priority"]
    firsts = Counter(names(router.plan(product))[0] for _ in range(4000))
    assert all(names(router.plan(product))[2] == "c" for _ in range(50))
    assert 2.5 < firsts["a"] / firsts["b"] < 3.5


def test_weighted_spreads_by_weight_and_weight_zero_is_last() -> None:
    router, _, config = setup()
    product = config.products["p.weighted"]
    plans = [names(router.plan(product)) for _ in range(4000)]
    firsts = Counter(plan[0] for plan in plans)
    assert 3.4 < firsts["c"] / firsts["a"] < 4.6
    assert all(plan[-1] == "b" for plan in plans)


def test_cheapest_orders_by_cost() -> None:
    router, _, config = setup()
    assert names(router.plan(config.products["p.cheapest"])) == ["b", "a", "c"]


def test_tried_and_disabled_suppliers_are_skipped() -> None:
    router, suppliers, config = setup()
    product = config.products["p.cheapest"]
    assert names(router.plan(product, tried={"b"})) == ["a", "c"]
    suppliers["a"].set_disabled(True)
    assert names(router.plan(product, tried={"b"})) == ["c"]
    suppliers["c"].set_disabled(True)
    assert router.plan(product, tried={"b"}) == []
    assert names(router.plan(product)) == ["b"]
    suppliers["b"].set_disabled(True)
    assert router.plan(product) == []
