"""GET /v1/orders/events across gateway instances sharing a Redis store (CONTRACT.md §6), on a server and a
Cluster: a change saved through one instance streams from every instance, ids resume anywhere.

Real gateways on real sockets before one simulated supplier (which calls back to the first instance),
read line by line as Server-Sent Events by `tests/e2e/test_events.py`'s client.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from aiohttp import ClientSession

from gateway.redisevents import stream_key
from gateway.store.redis_endpoint import RedisEndpoint
from tests.e2e.harness import Deployment, Gateway, SupplierSpec, start_simulator
from tests.e2e.test_events import EventStream, Frame, statuses, stream
from tests.e2e.test_operations import admin_url
from tests.redis_servers import RedisServer

SHOP = "demo"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def instances(gateway: Gateway, redis_url: str) -> AsyncIterator[list[Deployment]]:
    """Two gateways on `redis_url` before one fulu simulator, which calls back to the first."""
    first_port = _free_port()
    cleanups: list[Callable[[], Awaitable[None]]] = []
    _, url = await start_simulator("fulu", SupplierSpec(knobs={"result_after": 0.1}), first_port, cleanups)
    spec = SupplierSpec(url=url)
    yield [
        await gateway({"fulu": spec}, store=redis_url, port=first_port),
        await gateway({"fulu": spec}, store=redis_url),
    ]
    for cleanup in reversed(cleanups):
        await cleanup()


def ids(frames: list[Frame]) -> list[tuple[int, int]]:
    """The frames' event ids as numbers: Redis stream ids, in the order of the shop's events."""
    parsed = []
    for frame in frames:
        ms, _, seq = frame.fields["id"].partition("-")
        parsed.append((int(ms), int(seq)))
    return parsed


async def until_reset(events: EventStream) -> Frame:
    """The next reset frame, skipping order events."""
    while True:
        frame = await events.event()
        if frame.fields["event"] == "reset":
            return frame


async def test_a_subscriber_on_one_instance_sees_an_order_placed_and_finished_through_another(
    instances: list[Deployment],
) -> None:
    a, b = instances
    async with stream(b.shop) as events:
        status, _ = await a.shop.place(order_id="ACROSS-1", wait_seconds=0)
        assert status == 201
        frames = await events.until("ACROSS-1", "succeeded")
    seen = statuses(frames, "ACROSS-1")
    assert seen[0] == "processing"
    assert seen[-1] == "succeeded"
    assert frames[-1].order == (await a.shop.get("ACROSS-1"))[1]
    assert ids(frames) == sorted(set(ids(frames)))  # in order, none twice


async def test_an_id_given_by_one_instance_resumes_on_another_with_exactly_the_missed_events(
    instances: list[Deployment],
) -> None:
    a, b = instances
    async with stream(a.shop) as watcher:
        async with stream(a.shop) as first:
            await a.shop.place(order_id="RESUME-1", wait_seconds=0)
            last_id = (await first.until("RESUME-1", "succeeded"))[-1].fields["id"]
        # The client is gone; another order goes by while it is away.
        await watcher.until("RESUME-1", "succeeded")
        await a.shop.place(order_id="RESUME-2", wait_seconds=0)
        missed = await watcher.until("RESUME-2", "succeeded")
        async with stream(b.shop, last_event_id=last_id) as resumed:
            replayed = await resumed.until("RESUME-2", "succeeded")
            assert [(f.fields["id"], f.fields["data"]) for f in replayed] == [
                (f.fields["id"], f.fields["data"]) for f in missed
            ]
            # Then live, from whichever instance the change is saved through.
            await b.shop.place(order_id="RESUME-3", wait_seconds=0)
            assert {f.order["order_id"] for f in await resumed.until("RESUME-3", "succeeded")} == {"RESUME-3"}


async def test_an_id_older_than_the_shops_stream_keeps_gets_events_expired(
    instances: list[Deployment], redis_url: str
) -> None:
    a, b = instances
    async with stream(a.shop) as events:
        await a.shop.place(order_id="OLD-1", wait_seconds=0)
        old_id = (await events.until("OLD-1", "succeeded"))[0].fields["id"]
        await a.shop.place(order_id="OLD-2", wait_seconds=0)
        kept_from = (await events.until("OLD-2", "succeeded"))[0].fields["id"]
    # What a busy shop's bound does over time: everything before OLD-2 is trimmed away.
    client = RedisEndpoint.parse(redis_url).client()
    try:
        await client.xtrim(stream_key(SHOP), minid=kept_from, approximate=False)
    finally:
        await client.aclose()
    async with stream(b.shop, last_event_id=old_id) as events:
        reset = await events.event()
        assert reset.fields["event"] == "reset"
        assert orjson.loads(reset.fields["data"])["reason"] == "events_expired"
        await a.shop.place(order_id="OLD-3", wait_seconds=0)
        assert {f.order["order_id"] for f in await events.until("OLD-3", "succeeded")} == {"OLD-3"}


@pytest.mark.parametrize("last_event_id", ["garbage", "1700000000000-42"])
async def test_an_id_the_stream_never_issued_gets_unknown_event_id(
    instances: list[Deployment], last_event_id: str
) -> None:
    a, b = instances
    async with stream(a.shop) as events:
        await a.shop.place(order_id="UNKNOWN-1", wait_seconds=0)
        await events.until("UNKNOWN-1", "succeeded")
    async with stream(b.shop, last_event_id=last_event_id) as events:
        reset = await events.event()
        assert reset.fields["event"] == "reset"
        assert orjson.loads(reset.fields["data"])["reason"] == "unknown_event_id"
        await a.shop.place(order_id="UNKNOWN-2", wait_seconds=0)
        await events.until("UNKNOWN-2", "succeeded")


@pytest.mark.redis
async def test_redis_down_the_gateway_keeps_serving_and_streams_get_a_reset_when_it_is_back(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"result_after": 0.1})}, store=redis_server.url)
    async with stream(d.shop) as events:
        await d.shop.place(order_id="BEFORE", wait_seconds=0)
        await events.until("BEFORE", "succeeded")
        redis_server.stop()
        status, body, _ = await d.shop.post_raw(
            b'{"order_id": "DOWN", "product": "mobile.cmcc.50", "account": "13800138000"}'
        )
        assert (status, body["error"]["code"]) == (503, "store_unavailable")
        async with ClientSession() as session, session.get(admin_url(d) + "/healthz") as response:
            assert response.status == 200
        # A new stream cannot read where to resume from: refused like an order, nothing half open.
        headers = d.shop.headers("GET", "/v1/orders/events", b"")
        headers["Last-Event-ID"] = "1-0"
        async with d.session.get(d.base_url + "/v1/orders/events", headers=headers) as response:
            assert response.status == 503
            assert (await response.json())["error"]["code"] == "store_unavailable"
        redis_server.start()  # empty: the events it held are gone with it
        assert (await d.shop.place(order_id="AFTER", wait_seconds=0))[0] == 201
        # The open stream is told it lost events (whether its reader saw Redis go or finds the
        # stream it read gone), re-reads as a client does, and goes on live.
        reset = await until_reset(events)
        assert orjson.loads(reset.fields["data"])["reason"] == "events_lost"
        await d.shop.wait_for("AFTER", lambda order: order["status"] == "succeeded")
        await d.shop.place(order_id="AFTER-2", wait_seconds=0)
        assert statuses(await events.until("AFTER-2", "succeeded"), "AFTER-2")[-1] == "succeeded"
