"""Live order events over real sockets: GET /v1/orders/events read as Server-Sent Events, line by line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import ClientResponse, ClientTimeout

from tests.e2e.harness import Deployment, Gateway, Shop, SupplierSpec
from tests.e2e.served import served

PATH = "/v1/orders/events"
OTHER = "other"
OTHER_SECRET = "other-secret"
WITHIN = 5.0  # every read is bounded: a missing event fails the test instead of hanging it


@dataclass
class Frame:
    """One SSE frame: its fields (the last of each name) and its comment lines."""

    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def order(self) -> Any:
        assert self.fields.get("event") == "order", self
        return orjson.loads(self.fields["data"])


class EventStream:
    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def frame(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        frame = Frame()
        async with asyncio.timeout(WITHIN):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\n")
                if not line:
                    return frame
                name, _, value = line.partition(":")
                if not name:
                    frame.comments.append(value.strip())
                else:
                    frame.fields[name] = value.removeprefix(" ")

    async def event(self) -> Frame:
        """The next frame that dispatches an event (has data)."""
        while True:
            frame = await self.frame()
            assert frame is not None, "the stream ended"
            if "data" in frame.fields:
                return frame

    async def until(self, order_id: str, status: str) -> list[Frame]:
        """Events up to the one showing `order_id` in `status`."""
        seen: list[Frame] = []
        while True:
            seen.append(await self.event())
            order = seen[-1].order
            if (order["order_id"], order["status"]) == (order_id, status):
                return seen


@asynccontextmanager
async def stream(
    shop: Shop, *, last_event_id: str | None = None, query: str = "", **override: str
) -> AsyncIterator[EventStream]:
    """An open, subscribed event stream (its opening frame already read)."""
    path = PATH + query
    headers = shop.headers("GET", path, b"", **override)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with shop.session.get(
        shop.base_url + path, headers=headers, timeout=ClientTimeout(total=None)
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = EventStream(response)
        opening = await events.frame()
        assert opening is not None
        assert "connected" in opening.comments
        yield events


def statuses(frames: list[Frame], order_id: str) -> list[str]:
    return [f.order["status"] for f in frames if f.order["order_id"] == order_id]


async def deploy(gateway: Gateway, **knobs: Any) -> Deployment:
    return await gateway(
        {"fulu": SupplierSpec(knobs={"result_after": 0.1, **knobs})},
        shops={OTHER: {"secret": OTHER_SECRET, "products": ["mobile.*"]}},
    )


def other_shop(d: Deployment) -> Shop:
    return Shop(d.session, d.base_url, shop=OTHER, secret=OTHER_SECRET, now=d.clock.now)


async def test_a_shop_sees_its_order_go_processing_then_succeeded(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop) as events:
        status, _ = await d.shop.place(order_id="EV-1", wait_seconds=0)
        assert status == 201
        frames = await events.until("EV-1", "succeeded")
    seen = statuses(frames, "EV-1")
    assert seen[0] == "processing"
    assert seen[-1] == "succeeded"
    final = frames[-1].order
    assert final == (await d.shop.get("EV-1"))[1]  # the same order JSON as GET /v1/orders/{order_id}
    epoch = str(d.runtime.events.epoch)
    ids = [f.fields["id"] for f in frames]
    assert all(i.startswith(epoch + "-") for i in ids)
    assert [int(i.rpartition("-")[2]) for i in ids] == sorted(int(i.rpartition("-")[2]) for i in ids)


async def test_another_shops_orders_are_not_visible(gateway: Gateway) -> None:
    d = await deploy(gateway)
    other = other_shop(d)
    async with stream(other) as theirs, stream(d.shop) as ours:
        await d.shop.place(order_id="MINE-1", wait_seconds=0)
        await ours.until("MINE-1", "succeeded")
        assert (await other.place(order_id="THEIRS-1", wait_seconds=0))[0] == 201
        frames = await theirs.until("THEIRS-1", "succeeded")
        # Events come in order: had MINE-1 leaked, it would show before THEIRS-1 finished.
        assert {f.order["order_id"] for f in frames} == {"THEIRS-1"}
        await d.shop.place(order_id="MINE-2", wait_seconds=0)
        frames = await ours.until("MINE-2", "succeeded")
        assert {f.order["order_id"] for f in frames} == {"MINE-2"}


async def test_reconnecting_with_last_event_id_replays_only_what_was_missed(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop) as events:
        await d.shop.place(order_id="R-1", wait_seconds=0)
        last_id = (await events.until("R-1", "succeeded"))[-1].fields["id"]
    await d.shop.place(order_id="R-2", wait_seconds=0)
    await d.shop.wait_for("R-2", lambda o: o["status"] == "succeeded")
    async with stream(d.shop, last_event_id=last_id) as events:
        frames = await events.until("R-2", "succeeded")
        assert {f.order["order_id"] for f in frames} == {"R-2"}
        assert statuses(frames, "R-2")[0] == "processing"
        # Then live.
        await d.shop.place(order_id="R-3", wait_seconds=0)
        assert {f.order["order_id"] for f in await events.until("R-3", "succeeded")} == {"R-3"}


async def test_last_event_id_may_come_in_the_signed_query_string(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop) as events:
        await d.shop.place(order_id="Q-1", wait_seconds=0)
        last_id = (await events.until("Q-1", "succeeded"))[-1].fields["id"]
    await d.shop.place(order_id="Q-2", wait_seconds=0)
    await d.shop.wait_for("Q-2", lambda o: o["status"] == "succeeded")
    async with stream(d.shop, query=f"?last_event_id={last_id}") as events:
        frames = await events.until("Q-2", "succeeded")
        assert {f.order["order_id"] for f in frames} == {"Q-2"}


async def test_an_id_from_before_a_restart_gets_a_reset_first(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop, last_event_id="1700000000000-42") as events:
        reset = await events.event()
        assert reset.fields["event"] == "reset"
        assert orjson.loads(reset.fields["data"])["reason"] == "gateway_restarted"
        assert reset.fields["id"] == d.runtime.events.position
        await d.shop.place(order_id="AFTER-1", wait_seconds=0)
        await events.until("AFTER-1", "succeeded")


async def test_an_idle_stream_gets_heartbeat_comments(gateway: Gateway) -> None:
    d = await deploy(gateway)
    d.runtime.events.heartbeat_seconds = 0.05
    async with stream(d.shop) as events:
        frame = await events.frame()
        assert frame is not None
        assert frame == Frame(comments=["keep-alive"])


async def test_a_bad_signature_is_401_json(gateway: Gateway) -> None:
    d = await deploy(gateway)
    headers = d.shop.headers("GET", PATH, b"", **{"X-Signature": "0" * 64})
    async with d.session.get(d.base_url + PATH, headers=headers) as response:
        assert response.status == 401
        body = await response.json()
    assert body["error"]["code"] == "unauthenticated"
    # The query string is signed too: one added after signing is refused.
    headers = d.shop.headers("GET", PATH, b"")
    async with d.session.get(d.base_url + PATH + "?last_event_id=1-1", headers=headers) as response:
        assert response.status == 401
    assert d.runtime.events.subscribers("demo") == 0


async def test_an_unknown_query_parameter_is_400(gateway: Gateway) -> None:
    d = await deploy(gateway)
    path = PATH + "?since=1"
    async with d.session.get(d.base_url + path, headers=d.shop.headers("GET", path, b"")) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["details"] == [{"field": "since", "message": "unknown parameter"}]


async def test_streams_end_when_the_gateway_shuts_down(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop) as events, stream(other_shop(d)) as theirs:
        async with asyncio.timeout(WITHIN):
            await d.server.close()
        assert await events.frame() is None
        assert await theirs.frame() is None


async def test_a_shop_over_its_max_streams_gets_429_and_a_hung_up_stream_frees_its_slot() -> None:
    shops = {
        "demo": {"secret": "demo-secret", "products": ["mobile.*"], "max_streams": 2},
        OTHER: {"secret": OTHER_SECRET, "products": ["mobile.*"], "max_streams": 2},
    }
    # Served as `gateway run` serves it: nothing cancels a handler whose client hung up.
    async with served(shops=shops) as shop:
        other = Shop(shop.session, shop.base_url, shop=OTHER, secret=OTHER_SECRET)

        async def refused(by: Shop) -> Any:
            headers = by.headers("GET", PATH, b"")
            async with by.session.get(by.base_url + PATH, headers=headers) as response:
                assert response.status == 429
                return await response.json()

        async with stream(shop), stream(shop):
            assert (await refused(shop))["error"]["code"] == "too_many_streams"
            async with stream(other), stream(other):  # the cap is per shop
                await refused(other)
        # Both clients hung up; an idle stream writes only every 15 s, yet the slots come free at once.
        loop = asyncio.get_running_loop()
        hung_up_at = loop.time()
        reopened = None
        async with asyncio.timeout(WITHIN):
            while reopened is None:
                response = await shop.session.get(
                    shop.base_url + PATH, headers=shop.headers("GET", PATH, b"")
                )
                if response.status == 200:
                    reopened = response
                else:
                    assert response.status == 429
                    response.release()
                    await asyncio.sleep(0.1)
        try:
            assert loop.time() - hung_up_at < 3
            async with stream(shop):
                await refused(shop)
        finally:
            reopened.close()
