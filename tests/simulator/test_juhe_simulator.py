"""The juhe simulator over real sockets, driven by the real JuheAdapter, calling back a stub gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import pytest

from adapters.interface import HttpReply, HttpRequest, Verdict
from adapters.juhe import callback_sign, submit_sign
from gateway.clock import ManualClock
from gateway.simulator import ChargeState, Operation
from gateway.simulator.front import Refusal, Rejection
from gateway.simulator.juhe import JuheFront
from tests.simulator.conftest import PHONE, MakeSupplier, SimulatedProtocol, Supplier, as_received
from tests.simulator.protocols import JUHE

CREDENTIALS = JUHE.credentials


@pytest.fixture
def protocol() -> SimulatedProtocol:
    return JUHE


async def get(supplier: Supplier, path: str, **params: str) -> dict[str, Any]:
    """A hand-built request, for what the adapter would never send; juhe's JSON reply."""
    reply = await supplier.send(HttpRequest(method="GET", url=supplier.url(path, **params)))
    assert reply.status == 200
    answer: dict[str, Any] = json.loads(reply.body)
    return answer


# The order's life


async def test_submit_processing_then_signed_form_callback_then_query(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)

    assert accepted.verdict is Verdict.PROCESSING
    assert (accepted.code, accepted.message) == ("0", "订单提交成功，等待充值")
    assert accepted.supplier_order_id == "J0000000000000001"
    assert accepted.cost_cents == 4930
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.upstream_order_id == order_id
    assert callback.verdict is Verdict.SUCCEEDED
    assert callback.supplier_order_id == "J0000000000000001"
    ((content_type, body),) = supplier.gateway.received
    assert content_type == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(body.decode(), keep_blank_values=True)) == {
        "sporder_id": "J0000000000000001",
        "orderid": order_id,
        "sta": "1",
        "err_msg": "",
        "sign": callback_sign("demo-key", "J0000000000000001", order_id),
    }
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    entry = supplier.simulator.ledger[order_id]
    assert entry.state is ChargeState.SUCCEEDED
    assert (entry.account, entry.face_value_cents, entry.quantity, entry.sku) == (PHONE, 5000, 1, None)
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (1, 1)
    assert supplier.simulator.ledger.charged_once(PHONE)
    answer = await supplier.query(order_id)
    assert (answer.verdict, answer.code, answer.message) == (Verdict.SUCCEEDED, "0", "查询成功")
    assert (answer.supplier_order_id, answer.cost_cents) == (entry.supplier_order_id, 4930)


async def test_submit_reply_is_juhes_json_shape(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(result_after=5.0)
    order_id = supplier.new_id()

    reply = await supplier.send(
        supplier.adapter.build_submit(supplier.charge(order_id, face_value_cents=500))
    )

    assert reply.headers["Content-Type"] == "application/json;charset=utf-8"
    assert json.loads(reply.body) == {
        "reason": "订单提交成功，等待充值",
        "error_code": 0,
        "result": {
            "cardid": "1900205",
            "cardnum": "1",
            "ordercash": 4.93,
            "cardname": "手机话费5元直充",
            "sporder_id": "J0000000000000001",
            "uorderid": order_id,
            "game_userid": PHONE,
            "game_state": "0",
        },
    }
    assert list(json.loads(reply.body)) == ["reason", "error_code", "result"]
    assert supplier.adapter.parse_submit(order_id, reply).cost_cents == 493


async def test_declined_order_is_reported_failed(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(success_rate=0.0)
    order_id = supplier.new_id()

    assert (await supplier.submit(order_id)).verdict is Verdict.PROCESSING
    (callback,) = await supplier.gateway.callbacks(1)

    assert (callback.verdict, callback.message) == (Verdict.FAILED, "充值失败")
    assert (await supplier.query(order_id)).verdict is Verdict.FAILED
    assert not supplier.simulator.ledger.charged_once(PHONE)


async def test_query_of_an_unknown_id_is_not_found(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    answer = await supplier.query("G000000000000000000000000000999")

    assert (answer.verdict, answer.code, answer.message) == (Verdict.NOT_FOUND, "208516", "订单不存在")


# Faults


async def test_throttling_answers_10012_which_reads_as_throttled(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, max_requests_per_second=2)

    answers = [await supplier.submit() for _ in range(3)]
    throttled_query = await supplier.query(answers[0].upstream_order_id)
    clock.advance(1.0)
    later = await supplier.submit()

    assert [answer.verdict for answer in answers] == [
        Verdict.PROCESSING,
        Verdict.PROCESSING,
        Verdict.THROTTLED,
    ]
    assert (answers[2].code, answers[2].message) == ("10012", "请求超过次数限制")
    assert answers[2].retry_after_seconds is None  # juhe says "too many", not for how long
    assert answers[2].throttled
    # A throttled query tells nothing about the order.
    assert (throttled_query.verdict, throttled_query.code) == (Verdict.UNKNOWN, "10012")
    assert later.verdict is Verdict.PROCESSING
    assert len(supplier.simulator.ledger.charges()) == 3
    log = supplier.simulator.requests
    assert len(log) == 5
    assert log.max_in_window(1.0) == 4  # the throttled requests were received all the same
    assert len(log.requests(Operation.QUERY)) == 1


# Refused requests


async def test_wrong_openid_is_a_bad_signature_refused_with_10001(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    wrong = supplier.adapter_with({**CREDENTIALS, "openid": "wrong"})
    order_id = supplier.new_id()

    reply = wrong.parse_submit(order_id, await supplier.send(wrong.build_submit(supplier.charge(order_id))))

    assert (reply.verdict, reply.code, reply.message) == (Verdict.NOT_EXECUTED, "10001", "校验值sign错误")
    assert len(supplier.simulator.ledger) == 0
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


async def test_unknown_key_is_refused_with_10001(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    stranger = supplier.adapter_with({**CREDENTIALS, "key": "stranger"})
    order_id = supplier.new_id()

    submitted = stranger.parse_submit(
        order_id, await supplier.send(stranger.build_submit(supplier.charge(order_id)))
    )
    queried = await supplier.query(order_id, stranger)

    assert (submitted.verdict, submitted.code, submitted.message) == (
        Verdict.NOT_EXECUTED,
        "10001",
        "错误的请求KEY",
    )
    # A refused query says nothing about the order.
    assert (queried.verdict, queried.code) == (Verdict.UNKNOWN, "10001")
    assert len(supplier.simulator.ledger) == 0


async def test_key_that_needs_percent_encoding_round_trips(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(credentials={"key": "k&y=+/ 值%", "openid": "o/p+en"})
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)

    assert accepted.verdict is Verdict.PROCESSING
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.upstream_order_id == order_id
    assert (await supplier.query(order_id)).verdict is Verdict.SUCCEEDED


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"cardnum": "45"}, "不允许充值的手机号码及金额"),  # a face value juhe does not sell
        ({"cardnum": "abc"}, "不允许充值的手机号码及金额"),
        ({"cardnum": ""}, "不允许充值的手机号码及金额"),
        ({"phoneno": ""}, "请求参数错误"),
        ({"phoneno": "138-0013"}, "请求参数错误"),
        ({"orderid": "G1"}, "请求参数错误"),  # shorter than 8
        ({"orderid": "G" * 33}, "请求参数错误"),
        ({"orderid": "G0000000-01"}, "请求参数错误"),
    ],
)
async def test_unreadable_submit_fields_are_refused_with_208501(
    make_supplier: MakeSupplier, changes: dict[str, str], reason: str
) -> None:
    supplier = await make_supplier()
    params = {"phoneno": PHONE, "cardnum": "50", "orderid": supplier.new_id(), "key": "demo-key"} | changes
    signed = submit_sign("demo-openid", "demo-key", params["phoneno"], params["cardnum"], params["orderid"])

    answer = await get(supplier, "/ofpay/mobile/onlineorder", **params, sign=signed)

    assert answer == {"reason": reason, "error_code": 208501, "result": None}
    assert supplier.adapter.parse_submit(params["orderid"], as_reply(answer)).verdict is Verdict.NOT_EXECUTED
    assert len(supplier.simulator.ledger) == 0


async def test_missing_sign_is_refused_with_10001(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    answer = await get(
        supplier,
        "/ofpay/mobile/onlineorder",
        phoneno=PHONE,
        cardnum="50",
        orderid=supplier.new_id(),
        key="demo-key",
    )

    assert answer == {"reason": "校验值sign错误", "error_code": 10001, "result": None}


@pytest.mark.parametrize(
    "query_string",
    [
        "orderid=G0000000001&key=demo-key&orderid=G0000000002",  # repeated field
        "orderid=G%B3%E4000001&key=demo-key",  # not UTF-8
        "orderid=G1&key=demo-key",
        "key=demo-key",
    ],
)
async def test_unreadable_queries_are_refused_with_10001(
    make_supplier: MakeSupplier, query_string: str
) -> None:
    supplier = await make_supplier()
    url = supplier.url("/ofpay/mobile/ordersta") + "?" + query_string

    reply = await supplier.send(HttpRequest(method="GET", url=url))

    assert json.loads(reply.body) == {"reason": "请求参数错误", "error_code": 10001, "result": None}


async def test_callback_signed_with_another_key_is_refused_by_the_gateway(
    make_supplier: MakeSupplier,
) -> None:
    supplier = await make_supplier(result_after=5.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    entry = replace(supplier.simulator.ledger[order_id], state=ChargeState.SUCCEEDED)
    forger = JuheFront({"key": "other-key", "openid": "demo-openid"})

    forged = await supplier.send(forger.callback(entry, supplier.simulator.callback_url or ""))
    honest = await supplier.send(
        supplier.simulator.front.callback(entry, supplier.simulator.callback_url or "")
    )

    assert forged.status == 401
    assert supplier.gateway.rejected == 1
    assert supplier.simulator.front.acknowledged(honest.status, honest.body)
    assert [reply.upstream_order_id for reply in supplier.gateway.replies] == [order_id]


# Callback delivery


@pytest.mark.parametrize(
    ("status", "body", "acknowledged"),
    [(200, b"success", True), (200, b"success\n", True), (200, b"ok", False), (500, b"success", False)],
)
def test_acknowledged_only_by_200_success(status: int, body: bytes, acknowledged: bool) -> None:
    assert JuheFront(CREDENTIALS).acknowledged(status, body) is acknowledged


# The front itself


def test_front_contract() -> None:
    assert JuheFront.protocol == "juhe"
    assert JuheFront.routes == (
        ("GET", "/ofpay/mobile/onlineorder"),
        ("GET", "/ofpay/mobile/ordersta"),
        ("GET", "/ofpay/mobile/yue"),
    )
    assert JuheFront.supports_partial is False
    assert JuheFront.carries_notify_url is False
    assert JuheFront(CREDENTIALS).supplier_order_id(1) == "J0000000000000001"


@pytest.mark.parametrize(("credentials", "missing"), [({"key": "k"}, "openid"), ({}, "key, openid")])
def test_front_needs_both_credentials(credentials: dict[str, str], missing: str) -> None:
    with pytest.raises(ValueError, match=f"needs credentials {missing}"):
        JuheFront(credentials)


def as_reply(answer: Mapping[str, Any]) -> HttpReply:
    return HttpReply(status=200, headers={}, body=json.dumps(answer, ensure_ascii=False).encode())


@pytest.mark.parametrize(
    ("refusal", "error_code", "verdict"),
    [
        (Refusal.BAD_SIGNATURE, 10001, Verdict.NOT_EXECUTED),
        (Refusal.UNKNOWN_CREDENTIAL, 10001, Verdict.NOT_EXECUTED),
        (Refusal.BAD_REQUEST, 208501, Verdict.NOT_EXECUTED),
        (Refusal.UNKNOWN_PRODUCT, 208501, Verdict.NOT_EXECUTED),
        (Refusal.REFUSED, 208508, Verdict.NOT_EXECUTED),
        (Refusal.BALANCE_INSUFFICIENT, 208503, Verdict.BALANCE_INSUFFICIENT),
        (Refusal.DUPLICATE, 208509, Verdict.UNKNOWN),
        (Refusal.THROTTLED, 10012, Verdict.THROTTLED),
    ],
)
def test_every_submit_refusal_reads_back_as_meant(
    refusal: Refusal, error_code: int, verdict: Verdict
) -> None:
    reply = JuheFront(CREDENTIALS).rejection_reply(
        Rejection(refusal=refusal, operation=Operation.SUBMIT, upstream_order_ids=("G0000000001",))
    )
    assert json.loads(reply.body)["error_code"] == error_code
    assert JUHE.adapter("http://h").parse_submit("G0000000001", as_received(reply)).verdict is verdict
