"""The dayuanren simulator over real sockets, driven by the real DayuanrenAdapter, calling back a stub."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.dayuanren import DayuanrenAdapter, decode_form, encode_form, sign
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
from gateway.clock import Clock, ManualClock
from gateway.config.model import SimulateConfig
from gateway.simulator import ChargeState, Operation, Simulator
from gateway.simulator.dayuanren import DayuanrenFront

CREDENTIALS = {"userid": "10001", "apikey": "demo-apikey"}
QUICK = {"latency": 0.0, "result_after": 0.005, "success_rate": 1.0, "seed": 7}
CALLBACK_PATH = "/callbacks/dyr"
ACCOUNT = "13800138000"


def dayuanren_adapter(base_url: str, credentials: Mapping[str, str] = CREDENTIALS) -> DayuanrenAdapter:
    return DayuanrenAdapter(AdapterSettings(name="dyr", base_url=base_url, credentials=credentials))


class GatewayStub:
    """The gateway's callback endpoint, reduced to verifying with the adapter and acknowledging."""

    def __init__(self, adapter: DayuanrenAdapter) -> None:
        self.adapter = adapter
        self.replies: list[SupplierReply] = []
        self.forms: list[dict[str, str]] = []  # every accepted callback's fields, as received
        self.rejected = 0
        self.fail_next = 0  # answer this many callbacks with 500 first
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post(CALLBACK_PATH, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="busy")
        callback = InboundCallback(
            method=request.method, query=dict(request.query), content_type=request.content_type,
            body=await request.read(),
        )  # fmt: skip
        try:
            reply = self.adapter.parse_callback(callback)
        except (BadSignature, MalformedMessage):
            self.rejected += 1
            self._wake()
            return web.Response(status=401, text="bad signature")
        self.replies.append(reply)
        self.forms.append(decode_form(callback.body))
        self._wake()
        ack = self.adapter.acknowledge()
        return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def callbacks(self, count: int) -> list[SupplierReply]:
        """Wait until `count` callbacks have been accepted (bounded by the test's timeout)."""
        async with asyncio.timeout(2.0):
            while len(self.replies) < count:
                await self._changed.wait()
        return self.replies


@dataclass
class Supplier:
    """One simulated dayuanren supplier, an adapter pointed at it and a stub gateway it calls back."""

    simulator: Simulator
    adapter: DayuanrenAdapter
    gateway: GatewayStub
    notify_url: str
    session: aiohttp.ClientSession
    server: TestServer
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self) -> str:
        return f"G{next(self.ids):027d}01"

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def send(self, request: HttpRequest, timeout_seconds: float = 2.0) -> HttpReply:
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with self.session.request(
            request.method, request.url, headers=dict(request.headers), data=request.body, timeout=timeout
        ) as response:
            return HttpReply(
                status=response.status, headers=dict(response.headers), body=await response.read()
            )

    async def post_form(self, path: str, fields: Mapping[str, str]) -> dict[str, Any]:
        """A hand-made request, signed with the right key; the supplier's JSON answer."""
        body = encode_form({**fields, "sign": sign(fields, CREDENTIALS["apikey"])})
        reply = await self.send(
            HttpRequest(
                method="POST",
                url=self.url(path),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=body,
            )
        )
        answer: dict[str, Any] = json.loads(reply.body)
        return answer

    def charge(self, upstream_order_id: str, **changes: Any) -> Charge:
        fields: dict[str, Any] = {
            "upstream_order_id": upstream_order_id,
            "sku": "101",
            "account": ACCOUNT,
            "account_kind": AccountKind.MOBILE_CN,
            "face_value_cents": 5000,
            "quantity": 1,
            "max_cost_cents": 4930,
            "callback_url": self.notify_url,
            "timestamp": time.time(),
        }
        return Charge(**(fields | changes))

    async def submit(self, upstream_order_id: str | None = None, **changes: Any) -> SupplierReply:
        upstream_order_id = upstream_order_id or self.new_id()
        reply = await self.send(self.adapter.build_submit(self.charge(upstream_order_id, **changes)))
        return self.adapter.parse_submit(upstream_order_id, reply)

    async def query(self, upstream_order_ids: Sequence[str]) -> Mapping[str, SupplierReply]:
        request = self.adapter.build_query(upstream_order_ids, time.time())
        return self.adapter.parse_query(upstream_order_ids, await self.send(request))

    async def query_one(self, upstream_order_id: str) -> SupplierReply:
        return (await self.query([upstream_order_id]))[upstream_order_id]


MakeSupplier = Callable[..., Awaitable[Supplier]]


@pytest.fixture
async def make_dayuanren(aiohttp_server: Any) -> AsyncIterator[MakeSupplier]:
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        clock: Clock | None = None,
        catalog: Mapping[str, int] | None = None,
        gateway_credentials: Mapping[str, str] = CREDENTIALS,
        callback_attempts: int = 5,
        **knobs: Any,
    ) -> Supplier:
        stub = GatewayStub(dayuanren_adapter("http://unused", gateway_credentials))
        stub_server = await aiohttp_server(stub.app)
        # No callback_url: dayuanren's requests carry their own notify_url.
        simulator = Simulator(
            DayuanrenFront(CREDENTIALS),
            knobs=SimulateConfig(**(QUICK | knobs)),
            clock=clock,
            catalog=catalog,
            callback_attempts=callback_attempts,
            callback_retry_seconds=0.01,
        )
        server = await aiohttp_server(simulator.app)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Supplier(
            simulator=simulator,
            adapter=dayuanren_adapter(str(server.make_url(""))),
            gateway=stub,
            notify_url=str(stub_server.make_url(CALLBACK_PATH)),
            session=session,
            server=server,
        )

    yield make
    for session in sessions:
        await session.close()


async def test_submit_processing_then_signed_callback_to_the_notify_url_then_query(
    make_dayuanren: MakeSupplier,
) -> None:
    supplier = await make_dayuanren()
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)

    assert (accepted.verdict, accepted.code, accepted.message) == (Verdict.PROCESSING, "0", "提交成功")
    assert accepted.supplier_order_id == "Y0000000000000001"
    assert accepted.cost_cents == 4930
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.upstream_order_id == order_id
    assert callback.verdict is Verdict.SUCCEEDED
    assert (callback.supplier_order_id, callback.message) == ("Y0000000000000001", "充值成功")
    (form,) = supplier.gateway.forms
    assert set(form) == {
        "userid", "order_number", "out_trade_num", "otime", "state", "mobile", "remark", "charge_amount",
        "voucher", "charge_kami", "sign",
    }  # fmt: skip
    assert (form["userid"], form["state"], form["mobile"], form["charge_amount"]) == (
        "10001",
        "1",
        ACCOUNT,
        "50.00",
    )
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    entry = supplier.simulator.ledger[order_id]
    assert entry.notify_url == supplier.notify_url
    assert (entry.sku, entry.face_value_cents, entry.state) == ("101", 5000, ChargeState.SUCCEEDED)
    # Only the final result is called back: no state-0 progress callback.
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (1, 1)
    assert supplier.simulator.ledger.charged_once(ACCOUNT)
    answer = await supplier.query_one(order_id)
    assert (answer.verdict, answer.supplier_order_id) == (Verdict.SUCCEEDED, entry.supplier_order_id)


async def test_query_while_charging_says_processing(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(result_after=5.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    assert (await supplier.query_one(order_id)).verdict is Verdict.PROCESSING


async def test_declined_order_is_reported_failed(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(success_rate=0.0)
    order_id = supplier.new_id()

    assert (await supplier.submit(order_id)).verdict is Verdict.PROCESSING
    (callback,) = await supplier.gateway.callbacks(1)

    assert (callback.verdict, callback.delivered_cents) == (Verdict.FAILED, None)
    assert supplier.gateway.forms[0]["state"] == "2"
    assert (await supplier.query_one(order_id)).verdict is Verdict.FAILED
    assert not supplier.simulator.ledger.charged_once(ACCOUNT)


async def test_partial_result_is_state_3_with_the_delivered_part(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(partial_rate=1.0)
    order_id = supplier.new_id()

    await supplier.submit(order_id)
    (callback,) = await supplier.gateway.callbacks(1)

    entry = supplier.simulator.ledger[order_id]
    assert entry.state is ChargeState.PARTIAL
    assert entry.delivered_cents in {1250, 2500, 3750}
    assert (callback.verdict, callback.delivered_cents) == (Verdict.PARTIAL, entry.delivered_cents)
    form = supplier.gateway.forms[0]
    assert form["state"] == "3"
    assert form["charge_amount"] == f"{entry.delivered_cents // 100}.{entry.delivered_cents % 100:02d}"
    answer = await supplier.query_one(order_id)
    assert (answer.verdict, answer.delivered_cents) == (Verdict.PARTIAL, entry.delivered_cents)
    assert supplier.simulator.ledger.charged_once(ACCOUNT)


async def test_batch_query_answers_every_id_in_one_request(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    succeeded = [supplier.new_id() for _ in range(3)]
    for order_id in succeeded:
        await supplier.submit(order_id)
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    supplier.simulator.knobs = replace(supplier.simulator.knobs, result_after=5.0)
    charging = await supplier.submit()
    supplier.simulator.knobs = replace(supplier.simulator.knobs, refuse_rate=1.0)
    refused = supplier.new_id()
    await supplier.submit(refused)
    never_sent = [supplier.new_id(), supplier.new_id()]
    asked = [never_sent[0], *succeeded, refused, charging.upstream_order_id, never_sent[1]]

    answers = await supplier.query(asked)

    assert list(answers) == asked
    assert {uid: answer.verdict for uid, answer in answers.items()} == {
        **dict.fromkeys(succeeded, Verdict.SUCCEEDED),
        charging.upstream_order_id: Verdict.PROCESSING,
        **dict.fromkeys([refused, *never_sent], Verdict.NOT_FOUND),
    }
    assert [answers[uid].supplier_order_id for uid in succeeded] == [
        supplier.simulator.ledger[uid].supplier_order_id for uid in succeeded
    ]
    assert len(supplier.simulator.requests.requests(Operation.QUERY)) == 1


async def test_query_of_a_full_batch_of_fifty(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    asked = [order_id, *(supplier.new_id() for _ in range(49))]

    answers = await supplier.query(asked)

    assert answers[order_id].verdict in {Verdict.PROCESSING, Verdict.SUCCEEDED}
    assert [answer.verdict for answer in answers.values()][1:] == [Verdict.NOT_FOUND] * 49


async def test_reused_id_is_refused_as_a_duplicate_and_charged_once(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    again = await supplier.submit(order_id)

    assert (again.verdict, again.code, again.message) == (Verdict.UNKNOWN, "1005", "相同订单号不能提单")
    ledger = supplier.simulator.ledger
    assert ledger[order_id].submissions == 2
    assert ledger.duplicates() == [ledger[order_id]]
    assert len(ledger.charges_for(ACCOUNT)) == 1


async def test_refuse_rate_one_charges_nothing(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(refuse_rate=1.0)
    order_id = supplier.new_id()

    refused = await supplier.submit(order_id)

    assert (refused.verdict, refused.code, refused.message) == (Verdict.NOT_EXECUTED, "1002", "余额不足")
    assert supplier.simulator.ledger.charges() == []
    assert supplier.simulator.ledger[order_id].state is ChargeState.NOT_CHARGED
    assert (await supplier.query_one(order_id)).verdict is Verdict.NOT_FOUND
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    assert supplier.gateway.replies == []


async def test_error_rate_one_charges_and_answers_500(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(error_rate=1.0)
    order_id = supplier.new_id()

    reply = await supplier.send(supplier.adapter.build_submit(supplier.charge(order_id)))

    assert reply.status == 500
    assert supplier.adapter.parse_submit(order_id, reply).verdict is Verdict.UNKNOWN
    assert supplier.simulator.ledger[order_id].charged
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.verdict is Verdict.SUCCEEDED


async def test_garbage_rate_one_charges_and_answers_unreadably(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(garbage_rate=1.0)

    answers = [await supplier.submit() for _ in range(12)]

    assert {answer.verdict for answer in answers} == {Verdict.UNKNOWN}
    assert {answer.code for answer in answers} == {None}  # nothing was read, not even an errno
    assert len(supplier.simulator.ledger.charges()) == 12


@pytest.mark.parametrize("hang_charges", [True, False])
async def test_hung_submit_is_never_answered(make_dayuanren: MakeSupplier, hang_charges: bool) -> None:
    supplier = await make_dayuanren(hang_rate=1.0, hang_charges=hang_charges)
    order_id = supplier.new_id()

    with pytest.raises(TimeoutError):
        await supplier.send(supplier.adapter.build_submit(supplier.charge(order_id)), timeout_seconds=0.1)

    assert supplier.simulator.ledger[order_id].charged is hang_charges
    if hang_charges:
        await supplier.gateway.callbacks(1)
    expected = Verdict.SUCCEEDED if hang_charges else Verdict.NOT_FOUND
    assert (await supplier.query_one(order_id)).verdict is expected
    async with asyncio.timeout(2):
        await supplier.server.close()  # the hung request is let go rather than awaited


async def test_bad_signature_is_refused_with_1001(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    wrong = dayuanren_adapter(supplier.url(""), {**CREDENTIALS, "apikey": "wrong"})
    order_id = supplier.new_id()

    reply = wrong.parse_submit(order_id, await supplier.send(wrong.build_submit(supplier.charge(order_id))))
    queried = wrong.parse_query([order_id], await supplier.send(wrong.build_query([order_id], 0.0)))

    assert (reply.verdict, reply.code, reply.message) == (Verdict.NOT_EXECUTED, "1001", "签名错误")
    assert (queried[order_id].verdict, queried[order_id].code) == (Verdict.UNKNOWN, "1001")
    assert len(supplier.simulator.ledger) == 0
    assert [r.operation for r in supplier.simulator.requests.requests()] == [
        Operation.SUBMIT,
        Operation.QUERY,
    ]


async def test_unknown_userid_is_refused_with_1001(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    stranger = dayuanren_adapter(supplier.url(""), {**CREDENTIALS, "userid": "10002"})
    order_id = supplier.new_id()

    reply = stranger.parse_submit(
        order_id, await supplier.send(stranger.build_submit(supplier.charge(order_id)))
    )

    assert (reply.verdict, reply.code) == (Verdict.NOT_EXECUTED, "1001")
    assert len(supplier.simulator.ledger) == 0


SUBMIT_FIELDS = {
    "userid": "10001",
    "out_trade_num": "G000000000000000000000000000901",
    "product_id": "101",
    "mobile": ACCOUNT,
    "notify_url": "http://127.0.0.1:1/callbacks/dyr",
    "amount": "50",
}


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/yrapi.php/index/recharge", {k: v for k, v in SUBMIT_FIELDS.items() if k != "notify_url"}),
        ("/yrapi.php/index/recharge", {**SUBMIT_FIELDS, "amount": "fifty"}),
        ("/yrapi.php/index/recharge", {**SUBMIT_FIELDS, "amount": "0"}),
        ("/yrapi.php/index/recharge", {**SUBMIT_FIELDS, "price": "-1"}),
        ("/yrapi.php/index/check", {"userid": "10001", "out_trade_nums": ""}),
        ("/yrapi.php/index/check", {"userid": "10001", "out_trade_nums": "G1,,G2"}),
        (
            "/yrapi.php/index/check",
            {"userid": "10001", "out_trade_nums": ",".join(f"G{n}" for n in range(51))},
        ),
        ("/yrapi.php/index/check", {"userid": "10001"}),
    ],
)
async def test_unreadable_requests_are_refused_with_errno_1(
    make_dayuanren: MakeSupplier, path: str, fields: dict[str, str]
) -> None:
    supplier = await make_dayuanren()

    answer = await supplier.post_form(path, fields)

    assert (answer["errno"], answer["errmsg"]) == (1, "参数错误")
    assert len(supplier.simulator.ledger) == 0


async def test_a_body_that_is_no_form_is_refused_with_errno_1(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    request = HttpRequest(method="POST", url=supplier.url("/yrapi.php/index/recharge"), body=b'{"a":1}')

    reply = await supplier.send(request)

    assert json.loads(reply.body)["errno"] == 1
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


async def test_a_signed_hand_made_submit_is_accepted(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()

    answer = await supplier.post_form("/yrapi.php/index/recharge", {**SUBMIT_FIELDS, "price": "49.30"})

    assert answer == {
        "errno": 0,
        "errmsg": "提交成功",
        "data": {
            "order_number": "Y0000000000000001",
            "out_trade_num": SUBMIT_FIELDS["out_trade_num"],
            "total_price": "49.30",
        },
    }


async def test_unknown_product_is_refused_with_1003(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(catalog={"101": 3000})
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)
    unknown = await supplier.submit(sku="999")

    assert (accepted.verdict, accepted.cost_cents) == (Verdict.PROCESSING, 2958)
    assert supplier.simulator.ledger[order_id].face_value_cents == 3000
    assert (unknown.verdict, unknown.code, unknown.message) == (
        Verdict.NOT_EXECUTED,
        "1003",
        "产品不存在或已下架",
    )


async def test_throttling_answers_429_until_the_window_moves(make_dayuanren: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_dayuanren(clock=clock, max_requests_per_second=2)

    answers = [await supplier.submit() for _ in range(3)]
    throttled_query = await supplier.query_one(answers[0].upstream_order_id)
    clock.advance(1.0)
    later = await supplier.submit()

    assert [answer.verdict for answer in answers] == [
        Verdict.PROCESSING,
        Verdict.PROCESSING,
        Verdict.THROTTLED,
    ]
    assert answers[2].retry_after_seconds == 1.0
    assert (throttled_query.verdict, throttled_query.retry_after_seconds) == (Verdict.UNKNOWN, 1.0)
    assert later.verdict is Verdict.PROCESSING
    assert len(supplier.simulator.ledger.charges()) == 3


async def test_callback_is_retried_until_acknowledged(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren()
    supplier.gateway.fail_next = 2
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    await supplier.gateway.callbacks(1)
    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    entry = supplier.simulator.ledger[order_id]
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (3, 1)


async def test_callback_under_another_key_is_refused_and_never_acknowledged(
    make_dayuanren: MakeSupplier,
) -> None:
    supplier = await make_dayuanren(
        gateway_credentials={**CREDENTIALS, "apikey": "other-apikey"}, callback_attempts=3
    )
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    assert supplier.gateway.replies == []
    assert supplier.gateway.rejected == 3
    entry = supplier.simulator.ledger[order_id]
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (3, 0)


async def test_duplicated_callback_arrives_twice(make_dayuanren: MakeSupplier) -> None:
    supplier = await make_dayuanren(callback_duplicate_rate=1.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    first, second = await supplier.gateway.callbacks(2)

    assert first == second
    assert first.upstream_order_id == order_id


def test_acknowledged_needs_200_and_success() -> None:
    front = DayuanrenFront(CREDENTIALS)
    assert front.acknowledged(200, b"success")
    assert front.acknowledged(200, b"success\n")
    assert not front.acknowledged(200, b"ok")
    assert not front.acknowledged(200, b"")
    assert not front.acknowledged(500, b"success")


def test_front_contract_and_credentials() -> None:
    assert DayuanrenFront.protocol == "dayuanren"
    assert DayuanrenFront.supports_partial
    assert DayuanrenFront.carries_notify_url
    assert DayuanrenFront.routes == (
        ("POST", "/yrapi.php/index/recharge"),
        ("POST", "/yrapi.php/index/check"),
    )
    with pytest.raises(ValueError, match="apikey"):
        DayuanrenFront({"userid": "10001"})
    with pytest.raises(ValueError, match="userid, apikey"):
        DayuanrenFront({"userid": "", "apikey": ""})
