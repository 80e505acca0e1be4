"""A shop's request rate (CONTRACT.md §7), and the count of every refusal before the charge.

A refused request records nothing and sends nothing, and may be sent again exactly as it was (its
nonce was not claimed); refusals are counted by shop and code; other shops are not slowed.
"""

from __future__ import annotations

import orjson

from tests.e2e.harness import Gateway, Shop, SupplierSpec
from tests.e2e.test_admin_orders import Admin
from tests.e2e.test_operations import scrape

LIMITED = "limited"
LIMITED_SECRET = "limited-shop-secret-0123456789"


async def test_over_its_rate_a_shop_is_refused_before_anything_is_recorded(gateway: Gateway) -> None:
    d = await gateway(
        {"fulu": SupplierSpec()},
        shops={
            LIMITED: {
                "secret": LIMITED_SECRET,
                "products": ["mobile.*"],
                "rate_limit": {"rate": 2, "per": "10s", "burst": 0},
            }
        },
    )
    shop = Shop(d.session, d.shop.base_url, shop=LIMITED, secret=LIMITED_SECRET, now=d.clock.now)
    first, _ = await shop.place(order_id="R-1", wait_seconds=0)
    assert first == 201

    body = orjson.dumps({"order_id": "R-2", "product": "mobile.cmcc.50", "account": "13800138000"})
    headers = shop.headers("POST", "/v1/orders", body)
    async with d.session.post(shop.base_url + "/v1/orders", data=body, headers=headers) as response:
        refused = (response.status, orjson.loads(await response.read()), response.headers.get("Retry-After"))
    assert refused[0] == 429
    assert refused[1]["error"]["code"] == "rate_limited"
    assert refused[2] is not None
    assert 1 <= int(refused[2]) <= 5

    status, _ = await Admin(d).get(f"/admin/orders/{LIMITED}/R-2")
    assert status == 404  # nothing recorded
    assert len(d.simulators["fulu"].ledger) == 1  # nothing sent
    other, _ = await d.shop.place(order_id="OTHER-1", wait_seconds=0)
    assert other == 201  # another shop is not slowed

    d.clock.advance(6)  # the next slot is free; the very same request, nonce and all, now goes
    async with d.session.post(shop.base_url + "/v1/orders", data=body, headers=headers) as response:
        assert response.status == 201

    refusals = ("gateway_shop_requests_refused_total", (("code", "rate_limited"), ("shop", LIMITED)))
    assert (await scrape(d))[refusals] == 1


async def test_a_shop_without_a_rate_limit_is_never_refused_for_its_rate(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    statuses = [(await d.shop.place(order_id=f"FREE-{i}", wait_seconds=0))[0] for i in range(30)]
    assert statuses == [201] * 30


async def test_every_refusal_before_the_charge_is_counted_by_shop_and_code(gateway: Gateway) -> None:
    d = await gateway(
        {"fulu": SupplierSpec()},
        shops={"small": {"secret": LIMITED_SECRET, "products": ["mobile.*"], "max_streams": 1}},
        product={"carrier": "cmcc"},
    )
    mismatched, body = await d.shop.place(order_id="CUCC-1", account="18612345678")
    assert (mismatched, body["error"]["code"]) == (422, "carrier_mismatch")
    invalid, _ = await d.shop.place(order_id="BAD-1", account="1381234")
    assert invalid == 422

    small = Shop(d.session, d.shop.base_url, shop="small", secret=LIMITED_SECRET, now=d.clock.now)
    path = "/v1/orders/events"
    async with d.session.get(small.base_url + path, headers=small.headers("GET", path, b"")) as first:
        assert first.status == 200
        async with d.session.get(small.base_url + path, headers=small.headers("GET", path, b"")) as second:
            assert second.status == 429

    counted = await scrape(d)
    name = "gateway_shop_requests_refused_total"
    assert counted[(name, (("code", "carrier_mismatch"), ("shop", "demo")))] == 1
    assert counted[(name, (("code", "invalid_account"), ("shop", "demo")))] == 1
    assert counted[(name, (("code", "too_many_streams"), ("shop", "small")))] == 1
