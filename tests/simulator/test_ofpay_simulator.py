"""The ofpay simulator over real sockets, driven by the real OfpayAdapter, calling back a stub gateway."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.interface import (
    AccountKind,
    AdapterSettings,
    BadSignature,
    Charge,
    HttpReply,
    HttpRequest,
    InboundCallback,
    MalformedMessage,
    SupplierReply,
    Verdict,
)
from adapters.ofpay import SUBMIT_SIGNED, OfpayAdapter, sign, userpws
from gateway.clock import Clock, ManualClock
from gateway.config.model import SimulateConfig
from gateway.simulator import ChargeState, Operation, Simulator
from gateway.simulator.front import Incoming, QueryRequest, Refusal, Rejection, SubmitRequest
from gateway.simulator.ofpay import OfpayFront

CREDENTIALS = {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"}
QUICK = {"latency": 0.0, "result_after": 0.005, "success_rate": 1.0, "seed": 7}
PHONE = "13800138000"


class GatewayStub:
    """The gateway's callback endpoint, reduced to verifying with the adapter and acknowledging."""

    def __init__(self, adapter: OfpayAdapter) -> None:
        self.adapter = adapter
        self.replies: list[SupplierReply] = []
        self.received: list[tuple[str, bytes]] = []  # (content type, raw body) of every callback
        self.rejected = 0
        self.fail_next = 0  # answer this many callbacks with 500 first
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/callbacks/ofpay", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.headers["Content-Type"], body))
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="busy")
        callback = InboundCallback(
            method=request.method, query=dict(request.query), content_type=request.content_type, body=body
        )
        try:
            reply = self.adapter.parse_callback(callback)
        except (BadSignature, MalformedMessage):
            self.rejected += 1
            return web.Response(status=401, text="bad signature")
        self.replies.append(reply)
        self._changed.set()
        self._changed = asyncio.Event()
        ack = self.adapter.acknowledge()
        return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)

    async def callbacks(self, count: int) -> list[SupplierReply]:
        """Wait until `count` callbacks have been accepted (bounded by the test's timeout)."""
        async with asyncio.timeout(2.0):
            while len(self.replies) < count:
                await self._changed.wait()
        return self.replies


@dataclass
class Supplier:
    """One simulated ofpay supplier, an adapter pointed at it and a stub gateway it calls back."""

    simulator: Simulator
    adapter: OfpayAdapter
    gateway: GatewayStub
    session: aiohttp.ClientSession
    server: TestServer
    callback_url: str
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"G{next(self.ids):027d}01"

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def send(self, request: HttpRequest, timeout_seconds: float = 2.0) -> HttpReply:
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with self.session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body or None,
            timeout=timeout,
        ) as response:
            return HttpReply(
                status=response.status, headers=dict(response.headers), body=await response.read()
            )

    def charge(self, upstream_order_id: str, **changes: Any) -> Charge:
        fields: dict[str, Any] = {
            "upstream_order_id": upstream_order_id,
            "sku": "140101",
            "account": PHONE,
            "account_kind": AccountKind.MOBILE_CN,
            "face_value_cents": 5000,
            "quantity": 1,
            "max_cost_cents": 4950,
            "callback_url": self.callback_url,
            "timestamp": time.time(),
        }
        return Charge(**(fields | changes))

    async def submit(
        self, upstream_order_id: str | None = None, adapter: OfpayAdapter | None = None, **changes: Any
    ) -> SupplierReply:
        adapter = adapter or self.adapter
        upstream_order_id = upstream_order_id or self.new_id()
        reply = await self.send(adapter.build_submit(self.charge(upstream_order_id, **changes)))
        return adapter.parse_submit(upstream_order_id, reply)

    async def query(self, upstream_order_id: str, adapter: OfpayAdapter | None = None) -> SupplierReply:
        adapter = adapter or self.adapter
        request = adapter.build_query([upstream_order_id], time.time())
        return adapter.parse_query([upstream_order_id], await self.send(request))[upstream_order_id]

    async def signed_get(self, **params: str) -> HttpReply:
        """A submit built by hand from `params`, signed with the right credentials."""
        fields = {"userid": "A1234567", "userpws": userpws("demo-password")} | params
        fields["md5_str"] = sign(*(fields.get(key, "") for key in SUBMIT_SIGNED), "OFCARD")
        query = urlencode(fields, encoding="gbk")
        return await self.send(HttpRequest(method="GET", url=f"{self.url('/onlineorder.do')}?{query}"))


MakeSupplier = Callable[..., Awaitable[Supplier]]


def ofpay_adapter(base_url: str, credentials: Mapping[str, str] = CREDENTIALS) -> OfpayAdapter:
    return OfpayAdapter(AdapterSettings(name="ofpay", base_url=base_url, credentials=credentials))


@pytest.fixture
async def make_supplier(aiohttp_server: Any) -> AsyncIterator[MakeSupplier]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        clock: Clock | None = None,
        catalog: Mapping[str, int] | None = None,
        gateway_credentials: Mapping[str, str] = CREDENTIALS,
        **knobs: Any,
    ) -> Supplier:
        stub = GatewayStub(ofpay_adapter("http://unused", gateway_credentials))
        stub_server = await aiohttp_server(stub.app)
        simulator = Simulator(
            OfpayFront(CREDENTIALS),
            knobs=SimulateConfig(**(QUICK | knobs)),
            clock=clock,
            catalog=catalog,
            callback_retry_seconds=0.01,
        )
        server = await aiohttp_server(simulator.app)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Supplier(
            simulator=simulator,
            adapter=ofpay_adapter(str(server.make_url(""))),
            gateway=stub,
            session=session,
            server=server,
            callback_url=str(stub_server.make_url("/callbacks/ofpay")),
        )

    yield make
    for session in sessions:
        await session.close()


# The order's story


async def test_submit_processing_then_gbk_callback_then_query(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)

    assert (accepted.verdict, accepted.code, accepted.message) == (Verdict.PROCESSING, "1", None)
    assert accepted.supplier_order_id == "S0000000000000001"
    assert accepted.cost_cents == 4930
    (callback,) = await supplier.gateway.callbacks(1)
    assert (callback.upstream_order_id, callback.verdict, callback.code) == (order_id, Verdict.SUCCEEDED, "1")
    assert callback.message == "充值成功"
    ((content_type, body),) = supplier.gateway.received
    assert content_type == "application/x-www-form-urlencoded; charset=GBK"
    assert b"err_msg=%B3%E4%D6%B5%B3%C9%B9%A6&" in body  # 充值成功 in GBK
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    entry = supplier.simulator.ledger[order_id]
    assert entry.state is ChargeState.SUCCEEDED
    assert (entry.sku, entry.face_value_cents, entry.quantity) == ("140101", 5000, 1)
    assert entry.notify_url == supplier.callback_url
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (1, 1)
    assert supplier.simulator.ledger.charged_once(PHONE)
    answer = await supplier.query(order_id)
    assert (answer.verdict, answer.code) == (Verdict.SUCCEEDED, "1")


async def test_submit_reply_is_gb2312_xml(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(result_after=5.0)

    reply = await supplier.send(supplier.adapter.build_submit(supplier.charge(supplier.new_id(), quantity=2)))

    assert reply.headers["Content-Type"] == "text/xml; charset=GB2312"
    assert reply.body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert b"<cardnum>100</cardnum>" in reply.body
    assert "<cardname>话费100元直充</cardname>".encode("gb2312") in reply.body
    with pytest.raises(UnicodeDecodeError):
        reply.body.decode("utf-8")


async def test_query_while_charging_says_processing(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(result_after=5.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    assert (await supplier.query(order_id)).verdict is Verdict.PROCESSING


async def test_declined_order_is_reported_failed(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(success_rate=0.0)
    order_id = supplier.new_id()

    assert (await supplier.submit(order_id)).verdict is Verdict.PROCESSING
    (callback,) = await supplier.gateway.callbacks(1)

    assert (callback.verdict, callback.code, callback.message) == (Verdict.FAILED, "9", "充值失败")
    assert (await supplier.query(order_id)).verdict is Verdict.FAILED
    assert not supplier.simulator.ledger.charged_once(PHONE)


async def test_query_of_an_unknown_id_is_not_found(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    answer = await supplier.query("G000000000000000000000000000999")

    assert (answer.verdict, answer.code) == (Verdict.NOT_FOUND, "-1")


async def test_chinese_game_account_survives_the_gbk_round_trip(make_supplier: MakeSupplier) -> None:
    # 一 is D2 BB in GBK, which is also valid UTF-8: the one case aiohttp decodes on the way in.
    # 號 is GBK but not GB2312, so the reply must carry it as a character reference.
    supplier = await make_supplier(catalog={"220612": 1000})
    order_id = supplier.new_id()
    account = "玩家一号 號+1"

    accepted = await supplier.submit(
        order_id, account_kind=AccountKind.GAME, sku="220612", account=account, quantity=3
    )

    assert (accepted.verdict, accepted.cost_cents) == (Verdict.PROCESSING, 2958)
    entry = supplier.simulator.ledger[order_id]
    assert (entry.account, entry.sku, entry.face_value_cents, entry.quantity) == (account, "220612", 1000, 3)
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.verdict is Verdict.SUCCEEDED


# Refusals


async def test_reused_id_is_refused_as_a_duplicate_and_charged_once(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    again = await supplier.submit(order_id)

    assert (again.verdict, again.code, again.message) == (Verdict.UNKNOWN, "1009", "订单号已存在")
    ledger = supplier.simulator.ledger
    assert ledger[order_id].submissions == 2
    assert ledger.duplicates() == [ledger[order_id]]
    assert len(ledger.charges_for(PHONE)) == 1


async def test_refuse_rate_one_charges_nothing(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(refuse_rate=1.0)
    order_id = supplier.new_id()

    refused = await supplier.submit(order_id)

    assert (refused.verdict, refused.code) == (Verdict.NOT_EXECUTED, "1005")
    assert "金额不足" in (refused.message or "")
    assert supplier.simulator.ledger.charges() == []
    assert supplier.simulator.ledger[order_id].state is ChargeState.NOT_CHARGED
    assert (await supplier.query(order_id)).verdict is Verdict.NOT_FOUND
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    assert supplier.gateway.replies == []


async def test_unknown_product_is_refused_with_1003(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(catalog={"140101": 5000})

    refused = await supplier.submit(account_kind=AccountKind.QQ, account="10001", sku="999999")

    assert (refused.verdict, refused.code) == (Verdict.NOT_EXECUTED, "1003")
    assert supplier.simulator.ledger.charges() == []


async def test_bad_signature_is_refused_with_1002(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    wrong = ofpay_adapter(supplier.url(""), {**CREDENTIALS, "keystr": "WRONG"})

    reply = await supplier.submit(adapter=wrong)

    assert (reply.verdict, reply.code, reply.message) == (Verdict.NOT_EXECUTED, "1002", "MD5验证错误")
    assert len(supplier.simulator.ledger) == 0
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


@pytest.mark.parametrize("changed", [{"userid": "B7654321"}, {"password": "wrong-password"}])
async def test_unknown_login_is_refused_with_1001(
    make_supplier: MakeSupplier, changed: dict[str, str]
) -> None:
    supplier = await make_supplier()
    stranger = ofpay_adapter(supplier.url(""), CREDENTIALS | changed)

    reply = await supplier.submit(adapter=stranger)

    assert (reply.verdict, reply.code) == (Verdict.NOT_EXECUTED, "1001")
    assert len(supplier.simulator.ledger) == 0


async def test_query_by_a_stranger_is_unknown(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    stranger = ofpay_adapter(supplier.url(""), {**CREDENTIALS, "userid": "B7654321"})

    answer = await supplier.query(order_id, adapter=stranger)

    # The refusal comes as an XML document, which is no query answer: it says nothing of the order.
    assert (answer.verdict, answer.code) == (Verdict.UNKNOWN, None)
    assert (answer.message or "").startswith("HTTP 200, not a query answer")


@pytest.mark.parametrize(
    "params",
    [
        {"cardid": "140101", "cardnum": "fifty", "sporder_id": "G1", "sporder_time": "20261122100000"},
        {"cardid": "140101", "cardnum": "050", "sporder_id": "G1", "sporder_time": "20261122100000"},
        {"cardid": "140101", "cardnum": "50", "sporder_time": "20261122100000", "game_userid": PHONE},
        {"cardid": "140101", "cardnum": "50", "sporder_id": "G1", "game_userid": PHONE},
    ],
)
async def test_unreadable_fields_are_refused_with_1003(
    make_supplier: MakeSupplier, params: dict[str, str]
) -> None:
    supplier = await make_supplier()

    reply = await supplier.signed_get(**({"game_userid": PHONE, "version": "6.0"} | params))

    assert b"<retcode>1003</retcode>" in reply.body
    assert len(supplier.simulator.ledger) == 0


async def test_wrong_version_is_refused_with_1003(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    params = {"cardid": "140101", "cardnum": "50", "sporder_id": "G1", "sporder_time": "20261122100000"}

    reply = await supplier.signed_get(**params, game_userid=PHONE, version="5.0")

    assert b"<retcode>1003</retcode>" in reply.body


async def test_undecodable_query_string_is_refused(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    reply = await supplier.send(HttpRequest(method="GET", url=supplier.url("/onlineorder.do") + "?a=%FF%FF"))

    assert b"<retcode>1003</retcode>" in reply.body
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


async def test_throttling_answers_429_until_the_window_moves(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, max_requests_per_second=2)

    answers = [await supplier.submit() for _ in range(3)]
    clock.advance(1.0)
    later = await supplier.submit()

    assert [answer.verdict for answer in answers] == [
        Verdict.PROCESSING,
        Verdict.PROCESSING,
        Verdict.THROTTLED,
    ]
    assert answers[2].retry_after_seconds == 1.0
    assert later.verdict is Verdict.PROCESSING
    assert len(supplier.simulator.ledger.charges()) == 3


# Faults


async def test_error_rate_one_charges_and_answers_500(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(error_rate=1.0)
    order_id = supplier.new_id()

    reply = await supplier.send(supplier.adapter.build_submit(supplier.charge(order_id)))

    assert reply.status == 500
    assert supplier.adapter.parse_submit(order_id, reply).verdict is Verdict.UNKNOWN
    assert supplier.simulator.ledger[order_id].charged
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.verdict is Verdict.SUCCEEDED


async def test_garbage_rate_one_charges_and_answers_unreadably(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(garbage_rate=1.0)

    answers = [await supplier.submit() for _ in range(12)]

    assert {answer.verdict for answer in answers} == {Verdict.UNKNOWN}
    assert len(supplier.simulator.ledger.charges()) == 12


@pytest.mark.parametrize("hang_charges", [True, False])
async def test_hung_submit_is_never_answered(make_supplier: MakeSupplier, hang_charges: bool) -> None:
    supplier = await make_supplier(hang_rate=1.0, hang_charges=hang_charges)
    order_id = supplier.new_id()

    with pytest.raises(TimeoutError):
        await supplier.send(supplier.adapter.build_submit(supplier.charge(order_id)), timeout_seconds=0.1)

    assert supplier.simulator.ledger[order_id].charged is hang_charges
    if hang_charges:
        await supplier.gateway.callbacks(1)
    expected = Verdict.SUCCEEDED if hang_charges else Verdict.NOT_FOUND
    assert (await supplier.query(order_id)).verdict is expected
    async with asyncio.timeout(2):
        await supplier.server.close()  # the hung request is let go rather than awaited


# Callbacks


async def test_callback_signed_with_another_key_is_never_acknowledged(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(gateway_credentials={**CREDENTIALS, "keystr": "OTHER"})
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    assert supplier.gateway.replies == []
    assert supplier.gateway.rejected == 5
    entry = supplier.simulator.ledger[order_id]
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (5, 0)


async def test_callback_is_retried_until_acknowledged(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    supplier.gateway.fail_next = 2
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    await supplier.gateway.callbacks(1)
    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    entry = supplier.simulator.ledger[order_id]
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (3, 1)


async def test_duplicated_callback_arrives_twice(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(callback_duplicate_rate=1.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    first, second = await supplier.gateway.callbacks(2)

    assert first == second
    assert first.upstream_order_id == order_id


async def test_callback_goes_to_the_ret_url_of_its_own_request(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    elsewhere = await make_supplier()
    order_id = supplier.new_id()

    await supplier.submit(order_id, callback_url=elsewhere.callback_url)

    (callback,) = await elsewhere.gateway.callbacks(1)
    assert callback.upstream_order_id == order_id
    assert supplier.gateway.received == []


async def test_knobs_can_be_replaced_while_running(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    supplier.simulator.knobs = replace(supplier.simulator.knobs, refuse_rate=1.0)
    refused = await supplier.submit()

    assert refused.verdict is Verdict.NOT_EXECUTED


# The front on its own


def test_front_reads_a_raw_query_string_too() -> None:
    front = OfpayFront(CREDENTIALS)
    charge = Charge(
        upstream_order_id="G1",
        sku="220612",
        account="玩家一号+ 1",
        account_kind=AccountKind.GAME,
        face_value_cents=1000,
        quantity=2,
        max_cost_cents=2000,
        callback_url="http://gw/callbacks/ofpay",
        timestamp=0.0,
    )
    url = ofpay_adapter("http://sim").build_submit(charge).url
    path, _, raw = url.removeprefix("http://sim").partition("?")

    reading = front.read(Incoming(method="GET", path=path, query_string=raw, headers={}, body=b""))

    assert reading == SubmitRequest(
        upstream_order_id="G1",
        account="玩家一号+ 1",
        sku="220612",
        face_value_cents=None,
        quantity=2,
        notify_url="http://gw/callbacks/ofpay",
    )


def test_front_reads_queries_and_refuses_strangers() -> None:
    front = OfpayFront(CREDENTIALS)

    def read(query_string: str) -> object:
        return front.read(
            Incoming(method="GET", path="/api/query.do", query_string=query_string, headers={}, body=b"")
        )

    assert read("userid=A1234567&spbillid=G1") == QueryRequest(upstream_order_ids=("G1",))
    assert read("userid=B&spbillid=G1") == Rejection(
        refusal=Refusal.UNKNOWN_CREDENTIAL, operation=Operation.QUERY, upstream_order_ids=("G1",)
    )
    assert read("userid=A1234567") == Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.QUERY)


def test_front_needs_every_credential() -> None:
    with pytest.raises(ValueError, match="password, keystr"):
        OfpayFront({"userid": "A1234567"})


async def test_percent_sign_in_an_account_survives(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    reply = await supplier.submit(account_kind=AccountKind.GAME, sku="220612", account="a%41b")

    assert (reply.verdict, reply.code) == (Verdict.PROCESSING, "1")
