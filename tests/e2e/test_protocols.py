"""Every supplier protocol end to end through the gateway, over real sockets against its simulator.

For each: an order succeeds by callback; its unknown outcomes (timeout after sending, 5xx, garbage)
are settled by a query and never reach a second supplier.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.registry import ADAPTERS
from gateway.money import format_money
from tests.e2e.harness import Gateway, SupplierSpec

PROTOCOLS: dict[str, dict[str, Any]] = {
    "fulu": {"credentials": {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}, "sku": "18221081"},
    "ofpay": {
        "credentials": {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
        "sku": "140101",
    },
    "juhe": {"credentials": {"key": "demo-key", "openid": "demo-openid"}, "sku": "50"},
    "dayuanren": {"credentials": {"userid": "10001", "apikey": "demo-apikey"}, "sku": "101"},
}


def spec(protocol: str, **knobs: Any) -> SupplierSpec:
    return SupplierSpec(protocol=protocol, credentials=dict(PROTOCOLS[protocol]["credentials"]), knobs=knobs)


def offers(*names_and_protocols: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"supplier": name, "sku": PROTOCOLS[protocol]["sku"], "cost": "49.30", "priority": i + 1}
        for i, (name, protocol) in enumerate(names_and_protocols)
    ]


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
async def test_an_order_succeeds_through_each_protocol(gateway: Gateway, protocol: str) -> None:
    d = await gateway({"main": spec(protocol)}, offers(("main", protocol)))
    _, order = await d.shop.place(order_id=f"P-{protocol}", wait_seconds=5)
    assert order["status"] == "succeeded", order
    assert order["delivered_value"] == "50"
    [attempt] = order["attempts"]
    entry = d.simulators["main"].ledger[attempt["upstream_order_id"]]
    assert entry.charged
    assert entry.account == "13800138000"
    assert entry.callbacks_acknowledged >= 1


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("fault", ["hang", "error", "garbage"])
async def test_unknown_outcomes_are_queried_never_failed_over(
    gateway: Gateway, protocol: str, fault: str
) -> None:
    knobs: dict[str, Any] = {f"{fault}_rate": 1.0, "callback_drop_rate": 1.0}
    d = await gateway(
        {
            "main": SupplierSpec(**{**spec(protocol, **knobs).__dict__, "timeout": "300ms"}),
            "spare": spec("fulu"),
        },
        offers(("main", protocol), ("spare", "fulu")),
    )
    _, order = await d.shop.place(order_id="U-1", wait_seconds=1)
    assert (order["status"], order["reason"]) == ("processing", "outcome_unknown"), order
    assert (await d.runtime.reconciler.sweep()).queried == 1
    _, order = await d.shop.get("U-1")
    assert order["status"] == "succeeded", order
    assert [a["supplier"] for a in order["attempts"]] == ["main"]
    assert len(d.simulators["spare"].requests) == 0
    assert len(d.simulators["main"].ledger.charges()) == 1


async def test_dayuanren_partial_delivery_ends_partial(gateway: Gateway) -> None:
    d = await gateway({"dyr": spec("dayuanren", partial_rate=1.0)}, offers(("dyr", "dayuanren")))
    _, order = await d.shop.place(order_id="PART-1", wait_seconds=5)
    assert order["status"] == "partial", order
    assert order["reason"] is None
    [attempt] = order["attempts"]
    entry = d.simulators["dyr"].ledger[attempt["upstream_order_id"]]
    assert entry.delivered_cents is not None
    assert 0 < entry.delivered_cents < 5000
    assert order["delivered_value"] == format_money(entry.delivered_cents)


def test_every_registered_protocol_is_exercised_here() -> None:
    assert set(PROTOCOLS) == set(ADAPTERS)
