"""The order WebSocket over real sockets (CONTRACT.md §8): signed upgrades and browser tokens, resuming with
the SSE stream's ids, resets, pings, the stream cap shared with SSE, clients that send nonsense, and a
socket on one Redis instance following orders placed through another.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType

from gateway.events import ResetReason, parse_event_id
from gateway.websocket import SOCKET_SETTINGS, SocketSettings
from tests.e2e.fleet import eventually
from tests.e2e.harness import Deployment, Gateway, Shop, SupplierSpec
from tests.e2e.served import served
from tests.e2e.test_events import deploy, other_shop, stream
from tests.e2e.test_events_instances import instances  # noqa: F401 (a fixture, used by name)
from tests.redis_servers import RedisServer

WS_PATH = "/v1/orders/ws"
TOKENS_PATH = "/v1/stream-tokens"
WITHIN = 5.0  # every read is bounded: a missing message fails the test instead of hanging it
FINAL = frozenset({"succeeded", "failed", "partial"})


def upgrade_headers() -> dict[str, str]:
    """What a WebSocket client sends to upgrade, for requests made by hand to see the HTTP answer."""
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(),
    }


class Socket:
    """A client's end of the order WebSocket: JSON text messages, read with a bound."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws

    async def message(self) -> dict[str, Any]:
        """The next message, pings included."""
        async with asyncio.timeout(WITHIN):
            received = await self.ws.receive()
        assert received.type is WSMsgType.TEXT, received
        doc: dict[str, Any] = orjson.loads(received.data)
        return doc

    async def next(self) -> dict[str, Any]:
        """The next message that is not a ping."""
        while True:
            doc = await self.message()
            if doc["type"] != "ping":
                return doc

    async def until(self, order_id: str, status: str) -> list[dict[str, Any]]:
        """Order messages up to the one showing `order_id` in `status`."""
        seen: list[dict[str, Any]] = []
        while True:
            doc = await self.next()
            assert doc["type"] == "order", doc
            seen.append(doc)
            if (doc["order"]["order_id"], doc["order"]["status"]) == (order_id, status):
                return seen

    async def close_code(self) -> int | None:
        """Reads on until the server closes; its close code."""
        async with asyncio.timeout(WITHIN):
            while True:
                received = await self.ws.receive()
                if received.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                    return self.ws.close_code


def token_url(shop: Shop, token: str) -> str:
    return f"{shop.base_url}{WS_PATH}?token={quote(token)}"


@asynccontextmanager
async def socket(
    shop: Shop, *, token: str | None = None, resume: str | None = None, start: bool = True
) -> AsyncIterator[Socket]:
    """An open order WebSocket: with `token` only (as a browser), else with the shop's signed headers.

    With `start`, its first message asks to resume from `resume` (null: from now), which also tells the
    gateway not to wait for one.
    """
    if token is None:
        url, headers = shop.base_url + WS_PATH, shop.headers("GET", WS_PATH, b"")
    else:
        url, headers = token_url(shop, token), {}
    async with shop.session.ws_connect(url, headers=headers) as ws:
        if start:
            await ws.send_str(orjson.dumps({"type": "resume", "last_event_id": resume}).decode())
        yield Socket(ws)


async def mint(shop: Shop, body: bytes, path: str = TOKENS_PATH, **override: str) -> tuple[int, Any]:
    headers = shop.headers("POST", path, body, **override)
    async with shop.session.post(shop.base_url + path, data=body, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


async def token_for(shop: Shop, **fields: Any) -> str:
    status, body = await mint(shop, orjson.dumps(fields))
    assert status == 201, body
    token: str = body["token"]
    return token


async def refused(shop: Shop, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    """An upgrade request answered with an HTTP error before any upgrade: its status and JSON body."""
    async with shop.session.get(url, headers={**headers, **upgrade_headers()}) as response:
        assert response.status != 101
        assert "Upgrade" not in response.headers
        assert response.headers["Content-Type"].startswith("application/json")
        return response.status, await response.json()


def with_payload(token: str, **changes: Any) -> str:
    """`token` with fields of its payload changed and its MAC kept: what a forger can make."""
    payload, _, mac = token.partition(".")
    doc = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc.update(changes)
    return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode() + "." + mac


def order_ids(messages: list[dict[str, Any]]) -> set[str]:
    return {m["order"]["order_id"] for m in messages}


async def settled(d: Deployment, order_id: str) -> None:
    await d.shop.wait_for(order_id, lambda order: order["status"] in FINAL)


async def test_a_signed_upgrade_follows_an_order_to_its_final_state(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with socket(d.shop) as ws:
        assert (await d.shop.place(order_id="WS-1", wait_seconds=0))[0] == 201
        messages = await ws.until("WS-1", "succeeded")
    assert messages[0]["order"]["status"] == "processing"
    assert messages[-1]["order"] == (await d.shop.get("WS-1"))[1]  # the order JSON of GET
    keys = [parse_event_id(m["id"]) for m in messages]
    assert all(key is not None and key[0] == d.runtime.events.epoch for key in keys)
    assert keys == sorted(keys)


async def test_a_token_for_one_order_sees_only_that_order(gateway: Gateway) -> None:
    d = await deploy(gateway)
    token = await token_for(d.shop, order_id="MINE")
    async with socket(d.shop, token=token) as ws:  # the token alone: no signed headers
        await d.shop.place(order_id="NOT-MINE", wait_seconds=0)
        await settled(d, "NOT-MINE")
        await d.shop.place(order_id="MINE", wait_seconds=0)
        # Events come in order: had NOT-MINE's leaked, they would come first.
        messages = await ws.until("MINE", "succeeded")
    assert order_ids(messages) == {"MINE"}
    assert messages[0]["order"]["status"] == "processing"


async def test_a_token_for_the_shop_sees_its_orders_and_no_other_shops(gateway: Gateway) -> None:
    d = await deploy(gateway)
    other = other_shop(d)
    token = await token_for(d.shop)
    async with socket(d.shop, token=token) as ws:
        await other.place(order_id="THEIRS", wait_seconds=0)
        await other.wait_for("THEIRS", lambda order: order["status"] in FINAL)
        await d.shop.place(order_id="OURS", wait_seconds=0)
        # Events come in order: had THEIRS leaked, it would come first.
        assert order_ids(await ws.until("OURS", "succeeded")) == {"OURS"}


async def test_a_one_order_token_gets_its_order_as_it_is_when_connecting(gateway: Gateway) -> None:
    d = await deploy(gateway)
    await d.shop.place(order_id="DONE", wait_seconds=0)
    await settled(d, "DONE")
    token = await token_for(d.shop, order_id="DONE")
    async with socket(d.shop, token=token) as ws:
        snapshot = await ws.next()
    assert snapshot == {
        "type": "order",
        "id": d.runtime.events.position,
        "order": (await d.shop.get("DONE"))[1],
    }


def _bad_signature(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    return d.base_url + WS_PATH, d.shop.headers("GET", WS_PATH, b"", **{"X-Signature": "0" * 64})


def _forged(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    payload, _, mac = token.partition(".")
    return token_url(d.shop, f"{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"), {}


def _other_order(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    return token_url(d.shop, with_payload(token, o="SOMEONE-ELSES")), {}


def _longer_life(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    return token_url(d.shop, with_payload(token, e=int(d.clock.now() * 1000) + 86_400_000)), {}


def _signature_as_token(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    return token_url(d.shop, d.shop.headers("GET", WS_PATH, b"")["X-Signature"]), {}


def _token_as_signature(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    return d.base_url + WS_PATH, d.shop.headers("GET", WS_PATH, b"", **{"X-Signature": token})


def _nothing(d: Deployment, token: str) -> tuple[str, dict[str, str]]:
    return d.base_url + WS_PATH, {}


BAD_UPGRADES: dict[str, Callable[[Deployment, str], tuple[str, dict[str, str]]]] = {
    "bad signature": _bad_signature,
    "forged token": _forged,
    "token altered to another order": _other_order,
    "token altered to live longer": _longer_life,
    "request signature as a token": _signature_as_token,
    "token as a request signature": _token_as_signature,
    "no credentials": _nothing,
}


@pytest.mark.parametrize("case", list(BAD_UPGRADES))
async def test_a_bad_credential_is_401_json_before_the_upgrade(gateway: Gateway, case: str) -> None:
    d = await deploy(gateway)
    token = await token_for(d.shop, order_id="MINE")
    url, headers = BAD_UPGRADES[case](d, token)
    status, body = await refused(d.shop, url, headers)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    assert d.runtime.events.subscribers("demo") == 0


async def test_an_expired_token_is_401_before_the_upgrade(gateway: Gateway) -> None:
    d = await deploy(gateway)
    token = await token_for(d.shop, order_id="LATER", ttl_seconds=60)
    async with socket(d.shop, token=token):
        pass  # good for now
    d.clock.advance(60)
    status, body = await refused(d.shop, token_url(d.shop, token), {})
    assert (status, body["error"]) == (401, {"code": "unauthenticated", "message": "token expired"})


async def test_another_shops_token_never_opens_this_shops_events(gateway: Gateway) -> None:
    d = await deploy(gateway)
    other = other_shop(d)
    theirs = await token_for(other)
    # Relabelled as ours, its MAC (made with the other shop's key) no longer holds.
    status, body = await refused(d.shop, token_url(d.shop, with_payload(theirs, s="demo")), {})
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    # Sent by us, it is refused rather than read as the other shop's.
    status, _ = await refused(d.shop, token_url(d.shop, theirs), {"X-Shop-Id": "demo"})
    assert status == 401
    # In its own shop's hands it works, and shows that shop's orders only.
    async with socket(other, token=theirs) as ws:
        await d.shop.place(order_id="OURS", wait_seconds=0)
        await settled(d, "OURS")
        await other.place(order_id="THEIRS", wait_seconds=0)
        assert order_ids(await ws.until("THEIRS", "succeeded")) == {"THEIRS"}


async def test_minting_a_token_takes_a_signed_request_and_checks_its_fields(gateway: Gateway) -> None:
    d = await deploy(gateway)
    status, body = await mint(d.shop, b"")  # every default
    assert status == 201
    assert set(body) == {"token", "expires_at"}
    expires_in = datetime.fromisoformat(body["expires_at"]).timestamp() - d.clock.now()
    assert 240 < expires_in <= 300  # 300 s from when it was minted, a moment ago
    status, body = await mint(d.shop, b'{"ttl_seconds": 3600, "order_id": "A-1"}')
    assert status == 201
    # Unsigned, badly signed, or with a token in place of a signature: 401.
    async with d.session.post(d.base_url + TOKENS_PATH, data=b"{}") as response:
        assert response.status == 401
    assert (await mint(d.shop, b"{}", **{"X-Signature": "0" * 64}))[0] == 401
    path = f"{TOKENS_PATH}?token={quote(body['token'])}"
    async with d.session.post(d.base_url + path, data=b"{}") as response:
        assert response.status == 401
    status, body = await mint(d.shop, b'{"order_id": "no spaces", "ttl_seconds": 0, "scope": "all"}')
    assert status == 400
    assert body["error"]["details"] == [
        {"field": "scope", "message": "is not a known field"},
        {"field": "order_id", "message": "must be 1 to 64 of letters, digits, _ . and -"},
        {"field": "ttl_seconds", "message": "must be an integer from 1 to 3600"},
    ]
    status, body = await mint(d.shop, b"{}", **{"Content-Type": "text/plain"})
    assert (status, body["error"]["code"]) == (415, "unsupported_media_type")
    for bad in (b'{"ttl_seconds": 3601}', b'{"ttl_seconds": true}', b'{"ttl_seconds": 1.5}', b"[]", b"{"):
        assert (await mint(d.shop, bad))[0] == 400, bad


async def test_resuming_replays_exactly_the_missed_events_with_the_sse_streams_ids(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop) as sse:
        async with socket(d.shop) as ws:
            await d.shop.place(order_id="R-1", wait_seconds=0)
            last_id = (await ws.until("R-1", "succeeded"))[-1]["id"]
        # The socket is gone; another order goes by meanwhile, seen by the SSE stream.
        await sse.until("R-1", "succeeded")
        await d.shop.place(order_id="R-2", wait_seconds=0)
        missed = await sse.until("R-2", "succeeded")
    async with socket(d.shop, resume=last_id) as ws:
        replayed = await ws.until("R-2", "succeeded")
        assert [(m["id"], m["order"]) for m in replayed] == [(f.fields["id"], f.order) for f in missed]
        await d.shop.place(order_id="R-3", wait_seconds=0)  # then live
        assert order_ids(await ws.until("R-3", "succeeded")) == {"R-3"}


async def test_a_one_order_token_resumes_with_only_that_orders_missed_events(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with stream(d.shop) as sse:
        await d.shop.place(order_id="BEFORE", wait_seconds=0)
        last_id = (await sse.until("BEFORE", "succeeded"))[-1].fields["id"]
        await d.shop.place(order_id="A", wait_seconds=0)
        missed = await sse.until("A", "succeeded")
        await d.shop.place(order_id="B", wait_seconds=0)
        missed += await sse.until("B", "succeeded")
    token = await token_for(d.shop, order_id="B")
    async with socket(d.shop, token=token, resume=last_id) as ws:
        replayed = await ws.until("B", "succeeded")
    expected = [(f.fields["id"], f.order) for f in missed if f.order["order_id"] == "B"]
    assert [(m["id"], m["order"]) for m in replayed] == expected


async def test_lost_events_are_a_reset(gateway: Gateway) -> None:
    d = await deploy(gateway)
    token = await token_for(d.shop, order_id="AFTER")
    # An id from before a restart: what it missed is gone.
    async with (
        socket(d.shop, resume="1700000000000-42") as ws,
        socket(d.shop, token=token, resume="x") as one,
    ):
        reset = await ws.next()
        assert reset["type"] == "reset"
        assert (reset["reason"], reset["id"]) == ("gateway_restarted", d.runtime.events.position)
        assert (await one.next())["reason"] == "unknown_event_id"  # a one-order stream is told too
        await d.shop.place(order_id="AFTER", wait_seconds=0)
        await ws.until("AFTER", "succeeded")
        await one.until("AFTER", "succeeded")
        # Live: the feed says events up to here may be lost.
        key = parse_event_id(d.runtime.events.position)
        assert key is not None
        d.runtime.events.reset("demo", key, ResetReason.EVENTS_LOST)
        for socket_ in (ws, one):
            reset = await socket_.next()
            assert (reset["type"], reset["reason"], reset["id"]) == (
                "reset",
                "events_lost",
                d.runtime.events.position,
            )


async def test_an_idle_socket_gets_pings() -> None:
    async with served({SOCKET_SETTINGS: SocketSettings(ping_seconds=0.05)}) as shop, socket(shop) as ws:
        assert await ws.message() == {"type": "ping"}
        assert await ws.message() == {"type": "ping"}


async def test_a_socket_that_sends_nothing_gets_its_events_once_the_resume_wait_is_over() -> None:
    # The served gateway's supplier is nowhere: orders fail, which is a change like any other.
    settings = {SOCKET_SETTINGS: SocketSettings(resume_wait_seconds=0.05)}
    async with served(settings) as shop, socket(shop, start=False) as ws:
        await shop.place(order_id="QUIET", wait_seconds=0)
        assert (await ws.until("QUIET", "failed"))[0]["order"]["status"] == "processing"


async def test_max_streams_counts_sse_and_websocket_streams_together() -> None:
    shops = {"demo": {"secret": "demo-secret", "products": ["mobile.*"], "max_streams": 2}}
    # Served as `gateway run` serves it: a closed socket must free its slot without help.
    async with served(shops=shops) as shop:
        token = await token_for(shop, order_id="ANY")
        async with stream(shop):
            async with socket(shop, token=token):
                status, body = await refused(shop, shop.base_url + WS_PATH, shop.headers("GET", WS_PATH, b""))
                assert (status, body["error"]["code"]) == (429, "too_many_streams")
                status, _ = await refused(shop, token_url(shop, token), {})
                assert status == 429
                headers = shop.headers("GET", "/v1/orders/events", b"")
                async with shop.session.get(shop.base_url + "/v1/orders/events", headers=headers) as response:
                    assert response.status == 429
            # The socket closed: its slot comes free (bounded wait: the server handles the close).
            async with asyncio.timeout(WITHIN):
                while True:
                    async with shop.session.get(
                        token_url(shop, token), headers=upgrade_headers()
                    ) as response:
                        if response.status == 101:
                            break
                        assert response.status == 429
                    await asyncio.sleep(0.05)


async def test_malformed_client_messages_do_not_break_the_stream(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with socket(d.shop) as ws:
        for text in (
            "not json",
            "[1, 2]",
            '"resume"',
            "{}",
            '{"type": "subscribe"}',
            '{"type": 7}',
            "\u00e9",
            '{"type": "resume", "last_event_id": null}',  # from now, again: nothing to do
        ):
            await ws.ws.send_str(text)
        await ws.ws.send_bytes(b"\x00\xff binary")
        await d.shop.place(order_id="STILL", wait_seconds=0)
        assert order_ids(await ws.until("STILL", "succeeded")) == {"STILL"}
        assert not ws.ws.closed


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(
            ['{"type": "resume", "last_event_id": null}', '{"type": "resume", "last_event_id": "1-1"}'],
            id="a resume after the start",
        ),
        pytest.param(['{"type": "resume", "last_event_id": 42}'], id="a resume from a number"),
        pytest.param(
            ['{"type": "resume", "last_event_id": null}', '{"type": "resume", "last_event_id": []}'],
            id="a malformed resume after the start",
        ),
    ],
)
async def test_a_resume_that_cannot_be_honoured_closes_with_1008(
    gateway: Gateway, messages: list[str]
) -> None:
    d = await deploy(gateway)
    async with socket(d.shop, start=False) as ws:
        for text in messages:
            await ws.ws.send_str(text)
        assert await ws.close_code() == 1008
    # And its slot is given back.
    assert await eventually(lambda: d.runtime.events.subscribers("demo") == 0, within=WITHIN)


async def test_a_client_gone_before_its_first_message_frees_its_slot(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with socket(d.shop, start=False):
        pass
    assert await eventually(lambda: d.runtime.events.subscribers("demo") == 0, within=WITHIN)


async def test_a_message_too_large_closes_with_1009(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with socket(d.shop) as ws:
        await ws.ws.send_str('{"type": "resume", "last_event_id": "' + "1" * 10_000 + '"}')
        assert await ws.close_code() == 1009


async def test_a_plain_get_and_unknown_query_parameters_are_400(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with d.session.get(d.base_url + WS_PATH, headers=d.shop.headers("GET", WS_PATH, b"")) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "invalid_request"
    path = WS_PATH + "?since=1"
    status, body = await refused(d.shop, d.base_url + path, d.shop.headers("GET", path, b""))
    assert status == 400
    assert body["error"]["details"] == [{"field": "since", "message": "unknown parameter"}]
    assert d.runtime.events.subscribers("demo") == 0


async def test_sockets_close_with_going_away_when_the_gateway_stops(gateway: Gateway) -> None:
    d = await deploy(gateway)
    async with socket(d.shop) as ws:
        stopping = asyncio.create_task(d.server.close())
        assert await ws.close_code() == 1001
        async with asyncio.timeout(WITHIN):
            await stopping


async def test_a_socket_on_one_instance_follows_an_order_placed_through_another(
    instances: list[Deployment],  # noqa: F811 (the fixture imported above)
) -> None:
    a, b = instances
    # Minted by A, verified by B from the token alone.
    token = await token_for(a.shop, order_id="ACROSS")
    async with socket(b.shop, token=token) as ws:
        await a.shop.place(order_id="ELSE", wait_seconds=0)
        await a.shop.place(order_id="ACROSS", wait_seconds=0)
        messages = await ws.until("ACROSS", "succeeded")
    assert order_ids(messages) == {"ACROSS"}
    assert messages[-1]["order"] == (await a.shop.get("ACROSS"))[1]


@pytest.mark.redis
async def test_a_resume_that_cannot_be_read_while_redis_is_down_closes_with_1013(
    gateway: Gateway, redis_server: RedisServer
) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"result_after": 0.1})}, store=redis_server.url)
    async with socket(d.shop) as ws:
        await d.shop.place(order_id="BEFORE", wait_seconds=0)
        last_id = (await ws.until("BEFORE", "succeeded"))[-1]["id"]
    token = await token_for(d.shop)
    redis_server.stop()
    # Live from now needs no read (the reader already has its place); a replay does.
    async with socket(d.shop, token=token, resume=last_id) as ws:
        assert await ws.close_code() == 1013
    assert await eventually(lambda: d.runtime.events.subscribers("demo") == 0, within=WITHIN)
