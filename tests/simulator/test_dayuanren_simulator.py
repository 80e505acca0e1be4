"""The dayuanren simulator over real sockets, driven by the real DayuanrenAdapter, calling back a stub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from adapters.dayuanren import decode_form, encode_form, sign
from adapters.interface import HttpRequest, Verdict
from gateway.clock import ManualClock
from gateway.simulator import ChargeState, Operation
from gateway.simulator.dayuanren import DayuanrenFront
from tests.simulator.conftest import PHONE, MakeSupplier, SimulatedProtocol, Supplier
from tests.simulator.protocols import DAYUANREN

CREDENTIALS = DAYUANREN.credentials


@pytest.fixture
def protocol() -> SimulatedProtocol:
    return DAYUANREN


def forms(supplier: Supplier) -> list[dict[str, str]]:
    """Every callback the stub gateway accepted, as the fields it received."""
    return [decode_form(callback.body) for callback in supplier.gateway.accepted]


async def post_form(supplier: Supplier, path: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """A hand-made request, signed with the right key; the supplier's JSON answer."""
    body = encode_form({**fields, "sign": sign(fields, CREDENTIALS["apikey"])})
    reply = await supplier.send(
        HttpRequest(
            method="POST",
            url=supplier.url(path),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=body,
        )
    )
    answer: dict[str, Any] = json.loads(reply.body)
    return answer


async def test_submit_processing_then_signed_callback_to_the_notify_url_then_query(
    make_supplier: MakeSupplier,
) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)

    assert (accepted.verdict, accepted.code, accepted.message) == (Verdict.PROCESSING, "0", "提交成功")
    assert accepted.supplier_order_id == "Y0000000000000001"
    assert accepted.cost_cents == 4930
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.upstream_order_id == order_id
    assert callback.verdict is Verdict.SUCCEEDED
    assert (callback.supplier_order_id, callback.message) == ("Y0000000000000001", "充值成功")
    (form,) = forms(supplier)
    assert set(form) == {
        "userid", "order_number", "out_trade_num", "otime", "state", "mobile", "remark", "charge_amount",
        "voucher", "charge_kami", "sign",
    }  # fmt: skip
    assert (form["userid"], form["state"], form["mobile"], form["charge_amount"]) == (
        "10001",
        "1",
        PHONE,
        "50.00",
    )
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    entry = supplier.simulator.ledger[order_id]
    assert entry.notify_url == supplier.callback_url
    assert (entry.sku, entry.face_value_cents, entry.state) == ("101", 5000, ChargeState.SUCCEEDED)
    # Only the final result is called back: no state-0 progress callback.
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (1, 1)
    assert supplier.simulator.ledger.charged_once(PHONE)
    answer = await supplier.query(order_id)
    assert (answer.verdict, answer.supplier_order_id) == (Verdict.SUCCEEDED, entry.supplier_order_id)


async def test_declined_order_is_reported_failed(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(success_rate=0.0)
    order_id = supplier.new_id()

    assert (await supplier.submit(order_id)).verdict is Verdict.PROCESSING
    (callback,) = await supplier.gateway.callbacks(1)

    assert (callback.verdict, callback.delivered_cents) == (Verdict.FAILED, None)
    assert forms(supplier)[0]["state"] == "2"
    assert (await supplier.query(order_id)).verdict is Verdict.FAILED
    assert not supplier.simulator.ledger.charged_once(PHONE)


async def test_partial_result_is_state_3_with_the_delivered_part(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(partial_rate=1.0)
    order_id = supplier.new_id()

    await supplier.submit(order_id)
    (callback,) = await supplier.gateway.callbacks(1)

    entry = supplier.simulator.ledger[order_id]
    assert entry.state is ChargeState.PARTIAL
    assert entry.delivered_cents in {1250, 2500, 3750}
    assert (callback.verdict, callback.delivered_cents) == (Verdict.PARTIAL, entry.delivered_cents)
    form = forms(supplier)[0]
    assert form["state"] == "3"
    assert form["charge_amount"] == f"{entry.delivered_cents // 100}.{entry.delivered_cents % 100:02d}"
    answer = await supplier.query(order_id)
    assert (answer.verdict, answer.delivered_cents) == (Verdict.PARTIAL, entry.delivered_cents)
    assert supplier.simulator.ledger.charged_once(PHONE)


async def test_batch_query_answers_every_id_in_one_request(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    succeeded = [supplier.new_id() for _ in range(3)]
    for order_id in succeeded:
        await supplier.submit(order_id)
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(update={"result_after": 5.0})
    charging = await supplier.submit()
    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(update={"refuse_rate": 1.0})
    refused = supplier.new_id()
    await supplier.submit(refused)
    never_sent = [supplier.new_id(), supplier.new_id()]
    asked = [never_sent[0], *succeeded, refused, charging.upstream_order_id, never_sent[1]]

    answers = await supplier.query_many(asked)

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


async def test_query_of_a_full_batch_of_fifty(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    asked = [order_id, *(supplier.new_id() for _ in range(49))]

    answers = await supplier.query_many(asked)

    assert answers[order_id].verdict in {Verdict.PROCESSING, Verdict.SUCCEEDED}
    assert [answer.verdict for answer in answers.values()][1:] == [Verdict.NOT_FOUND] * 49


async def test_bad_signature_is_refused_with_1001(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    wrong = supplier.adapter_with({**CREDENTIALS, "apikey": "wrong"})
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


async def test_unknown_userid_is_refused_with_1001(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    stranger = supplier.adapter_with({**CREDENTIALS, "userid": "10002"})
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
    "mobile": PHONE,
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
    make_supplier: MakeSupplier, path: str, fields: dict[str, str]
) -> None:
    supplier = await make_supplier()

    answer = await post_form(supplier, path, fields)

    assert (answer["errno"], answer["errmsg"]) == (1, "参数错误")
    assert len(supplier.simulator.ledger) == 0


async def test_a_body_that_is_no_form_is_refused_with_errno_1(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    request = HttpRequest(method="POST", url=supplier.url("/yrapi.php/index/recharge"), body=b'{"a":1}')

    reply = await supplier.send(request)

    assert json.loads(reply.body)["errno"] == 1
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


async def test_a_signed_hand_made_submit_is_accepted(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    answer = await post_form(supplier, "/yrapi.php/index/recharge", {**SUBMIT_FIELDS, "price": "49.30"})

    assert answer == {
        "errno": 0,
        "errmsg": "提交成功",
        "data": {
            "order_number": "Y0000000000000001",
            "out_trade_num": SUBMIT_FIELDS["out_trade_num"],
            "total_price": "49.30",
        },
    }


async def test_unknown_product_is_refused_with_1003(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(catalog={"101": 3000})
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


async def test_throttling_answers_429_until_the_window_moves(make_supplier: MakeSupplier) -> None:
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
    assert answers[2].retry_after_seconds == 1.0
    assert (throttled_query.verdict, throttled_query.retry_after_seconds) == (Verdict.UNKNOWN, 1.0)
    assert later.verdict is Verdict.PROCESSING
    assert len(supplier.simulator.ledger.charges()) == 3


async def test_callback_under_another_key_is_refused_and_never_acknowledged(
    make_supplier: MakeSupplier,
) -> None:
    supplier = await make_supplier(
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
        ("POST", "/yrapi.php/index/user"),
    )
    with pytest.raises(ValueError, match="apikey"):
        DayuanrenFront({"userid": "10001"})
    with pytest.raises(ValueError, match="userid, apikey"):
        DayuanrenFront({"userid": "", "apikey": ""})
