"""CONTRACT.md §5 series no other test asserts, read from a real scrape of the admin listener's /metrics."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.e2e.harness import Deployment, Gateway, SupplierSpec, after_balance_reads
from tests.e2e.test_callbacks import callback_body, open_order, post_callback
from tests.e2e.test_contract_admin import suppliers
from tests.e2e.test_operations import scrape

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def of(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def until(holds: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if holds():
                return
            await asyncio.sleep(0.02)


# -- gateway_notifications_total -------------------------------------------------------------------


class Shops:
    """Notify endpoints by path: /ok answers 200, /down 500, /flaky 500 once and then 200."""

    def __init__(self) -> None:
        self.posts: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        name = request.match_info["name"]
        self.posts[name] += 1
        failing = name == "down" or (name == "flaky" and self.posts[name] == 1)
        return web.Response(status=500 if failing else 200)


@pytest.fixture
async def shops() -> AsyncIterator[tuple[Shops, str]]:
    endpoints = Shops()
    app = web.Application()
    app.router.add_post("/{name}", endpoints.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield endpoints, str(server.make_url("")).rstrip("/")
    await server.close()


async def test_notifications_total_counts_delivered_retried_and_gave_up(
    gateway: Gateway, shops: tuple[Shops, str]
) -> None:
    endpoints, base = shops
    notify = {"timeout": "2s", "max_attempts": 2, "backoff": {"initial": "10s", "max": "1m"}}
    d = await gateway({"fulu": SupplierSpec()}, notify=notify)
    for name in ("ok", "flaky", "down"):
        _, order = await d.shop.place(order_id=f"N-{name}", notify_url=f"{base}/{name}", wait_seconds=5)
        assert order["status"] == "succeeded"
    await until(lambda: sum(endpoints.posts.values()) == 3)
    await d.runtime.notifier.idle()
    m = await scrape(d)
    assert of(m, "gateway_notifications_total", result="delivered") == 1  # ok
    assert of(m, "gateway_notifications_total", result="retried") == 2  # flaky and down, first tries
    assert of(m, "gateway_notifications_total", result="gave_up") == 0

    d.clock.advance(13)  # past the first backoff (10 s, with jitter)
    assert await d.runtime.notifier.deliver_due() == 2
    await d.runtime.notifier.idle()
    m = await scrape(d)
    assert of(m, "gateway_notifications_total", result="delivered") == 2  # flaky, second try
    assert of(m, "gateway_notifications_total", result="retried") == 2
    assert of(m, "gateway_notifications_total", result="gave_up") == 1  # down, at notify.max_attempts
    assert endpoints.posts == {"ok": 1, "flaky": 2, "down": 2}


# -- gateway_supplier_rate_limited_total -----------------------------------------------------------


async def test_rate_limited_total_counts_a_rejection_and_it_is_not_a_request(gateway: Gateway) -> None:
    one_per_ten = {"rate": 1, "per": "10s", "burst": 0, "max_wait": "0s"}
    d = await gateway({"limited": SupplierSpec(extra={"rate_limit": one_per_ten}), "spare": SupplierSpec()})
    await after_balance_reads(d, advance=10)
    served = []
    for i in range(2):
        _, order = await d.shop.place(order_id=f"R-{i}", wait_seconds=5)
        assert order["status"] == "succeeded"
        served.append([a["supplier"] for a in order["attempts"]])
    assert served == [["limited"], ["spare"]]  # skipped locally: no attempt, no request
    m = await scrape(d)
    assert of(m, "gateway_supplier_rate_limited_total", supplier="limited", result="rejected") == 1
    assert of(m, "gateway_supplier_rate_limited_total", supplier="limited", result="waited") == 0
    assert of(m, "gateway_supplier_rate_limited_total", supplier="spare", result="rejected") == 0
    sent = sum(
        value
        for (name, labels), value in m.items()
        if name == "gateway_supplier_requests_total" and ("supplier", "limited") in labels
    )
    assert sent == 1 == len(d.simulators["limited"].requests)


async def test_rate_limited_total_counts_a_wait(gateway: Gateway) -> None:
    one_per_second = {"rate": 1, "per": "1s", "burst": 0, "max_wait": "3s"}
    d = await gateway({"paced": SupplierSpec(extra={"rate_limit": one_per_second})})
    await after_balance_reads(d, advance=1)
    # Together: the second reserves the slot after the first's, about a second on, and waits for it.
    results = await asyncio.gather(*(d.shop.place(order_id=f"W-{i}", wait_seconds=5) for i in range(2)))
    assert [order["status"] for _, order in results] == ["succeeded", "succeeded"]
    m = await scrape(d)
    assert of(m, "gateway_supplier_rate_limited_total", supplier="paced", result="waited") == 1
    assert of(m, "gateway_supplier_rate_limited_total", supplier="paced", result="rejected") == 0
    assert len(d.simulators["paced"].requests) == 2


# -- gateway_http_request_duration_seconds ---------------------------------------------------------


def histogram(m: Samples, name: str, **labels: str) -> tuple[float, float, list[tuple[float, float]]]:
    """count, sum, and the (le, cumulative count) buckets in order."""
    key = tuple(sorted(labels.items()))
    buckets = sorted(
        (float(dict(lbls)["le"]), value)
        for (metric, lbls), value in m.items()
        if metric == f"{name}_bucket" and tuple(p for p in lbls if p[0] != "le") == key
    )
    return m[f"{name}_count", key], m[f"{name}_sum", key], buckets


async def test_http_request_duration_is_observed_once_per_request_by_route(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    for i in range(3):
        assert (await d.shop.place(order_id=f"H-{i}", wait_seconds=5))[0] == 201
    for order_id in ("H-0", "NOPE"):
        await d.shop.get(order_id)
    async with d.session.get(d.base_url + "/no/such/route") as response:
        assert response.status == 404
    m = await scrape(d)
    name = "gateway_http_request_duration_seconds"
    for route, expected in (("/v1/orders", 3), ("/v1/orders/{order_id}", 2), ("unmatched", 1)):
        count, total, buckets = histogram(m, name, route=route)
        assert count == expected, route
        requests = sum(
            value
            for (metric, labels), value in m.items()
            if metric == "gateway_http_requests_total" and ("route", route) in labels
        )
        assert requests == expected, route  # the same requests, each observed once
        assert total > 0
        assert buckets[-1] == (float("inf"), count)
        assert [c for _, c in buckets] == sorted(c for _, c in buckets)  # cumulative


# -- gateway_callbacks_total -----------------------------------------------------------------------


async def test_callbacks_total_counts_each_result(gateway: Gateway) -> None:
    d, upstream_id = await open_order(gateway)
    sent = [
        (callback_body(upstream_id), 200),  # accepted
        (callback_body(upstream_id), 200),  # duplicate: acknowledged, changes nothing
        (callback_body(upstream_id, secret="forged"), 401),  # bad_signature
        (callback_body("G00000000000000000000000000001"), 404),  # unknown_order
        (b"{", 400),  # malformed
    ]
    for body, status in sent:
        assert (await post_callback(d, "fulu", body))[0] == status, body
    m = await scrape(d)
    for result in ("accepted", "duplicate", "bad_signature", "unknown_order", "malformed"):
        assert of(m, "gateway_callbacks_total", supplier="fulu", result=result) == 1, result
    counted = sum(value for (metric, _), value in m.items() if metric == "gateway_callbacks_total")
    assert counted == len(sent)  # each callback once, under one result
    assert (await d.shop.get("CB-1"))[1]["status"] == "succeeded"


# -- gateway_supplier_circuit_state ----------------------------------------------------------------

BREAKER = {
    "window": "30s",
    "min_calls": 2,
    "failure_rate": 0.5,
    "slow_call": "5s",
    "slow_call_rate": 1.0,
    "open_for": "10s",
    "max_open_for": "20s",
    "half_open_calls": 1,
}


async def circuit(d: Deployment, supplier: str) -> tuple[float, float, str, bool]:
    """The gauge, gateway_supplier_up, and what /admin/suppliers says: they must agree."""
    m = await scrape(d)
    view = (await suppliers(d))[supplier]
    return (
        of(m, "gateway_supplier_circuit_state", supplier=supplier),
        of(m, "gateway_supplier_up", supplier=supplier),
        view["state"],
        view["routable"],
    )


async def test_circuit_state_gauge_goes_closed_open_half_open_closed(gateway: Gateway) -> None:
    d = await gateway(
        {
            "flaky": SupplierSpec(
                knobs={"error_rate": 1.0, "callback_drop_rate": 1.0}, extra={"breaker": BREAKER}
            ),
            "spare": SupplierSpec(),
        }
    )
    assert await circuit(d, "flaky") == (0, 1, "closed", True)
    for i in range(2):  # HTTP 500s: outcome unknown, a failure for the breaker (and never failed over)
        _, order = await d.shop.place(order_id=f"E-{i}", wait_seconds=1)
        assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [("flaky", "unknown")]
    assert await circuit(d, "flaky") == (2, 0, "open", False)
    _, order = await d.shop.place(order_id="SKIP", wait_seconds=5)
    assert [a["supplier"] for a in order["attempts"]] == ["spare"]

    simulator = d.simulators["flaky"]
    simulator.knobs = simulator.knobs.model_copy(update={"error_rate": 0.0, "callback_drop_rate": 0.0})
    d.clock.advance(10 * 1.1 + 0.1)  # open_for, at most 10 % jitter
    assert await circuit(d, "flaky") == (1, 1, "half_open", True)
    _, order = await d.shop.place(order_id="PROBE", wait_seconds=5)
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [("flaky", "succeeded")]
    assert await circuit(d, "flaky") == (0, 1, "closed", True)
