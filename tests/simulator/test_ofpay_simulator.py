"""The ofpay simulator over real sockets, driven by the real OfpayAdapter, calling back a stub gateway."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest

from adapters.interface import AccountKind, Charge, HttpReply, HttpRequest, Verdict
from adapters.ofpay import SUBMIT_SIGNED, sign, userpws
from gateway.clock import ManualClock
from gateway.simulator import ChargeState, Operation
from gateway.simulator.front import Incoming, QueryRequest, Refusal, Rejection, SubmitRequest
from gateway.simulator.ofpay import OfpayFront
from tests.simulator.conftest import PHONE, MakeSupplier, SimulatedProtocol, Supplier
from tests.simulator.protocols import OFPAY

CREDENTIALS = OFPAY.credentials


@pytest.fixture
def protocol() -> SimulatedProtocol:
    return OFPAY


async def signed_get(supplier: Supplier, **params: str) -> HttpReply:
    """A submit built by hand from `params`, signed with the right credentials."""
    fields = {"userid": "A1234567", "userpws": userpws("demo-password")} | params
    fields["md5_str"] = sign(*(fields.get(key, "") for key in SUBMIT_SIGNED), "OFCARD")
    query = urlencode(fields, encoding="gbk")
    return await supplier.send(HttpRequest(method="GET", url=f"{supplier.url('/onlineorder.do')}?{query}"))


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


async def test_unknown_product_is_refused_with_1003(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(catalog={"140101": 5000})

    refused = await supplier.submit(account_kind=AccountKind.QQ, account="10001", sku="999999")

    assert (refused.verdict, refused.code) == (Verdict.NOT_EXECUTED, "1003")
    assert supplier.simulator.ledger.charges() == []


async def test_bad_signature_is_refused_with_1002(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    wrong = supplier.adapter_with({**CREDENTIALS, "keystr": "WRONG"})

    reply = await supplier.submit(adapter=wrong)

    assert (reply.verdict, reply.code, reply.message) == (Verdict.NOT_EXECUTED, "1002", "MD5验证错误")
    assert len(supplier.simulator.ledger) == 0
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


@pytest.mark.parametrize("changed", [{"userid": "B7654321"}, {"password": "wrong-password"}])
async def test_unknown_login_is_refused_with_1001(
    make_supplier: MakeSupplier, changed: dict[str, str]
) -> None:
    supplier = await make_supplier()
    stranger = supplier.adapter_with({**CREDENTIALS, **changed})

    reply = await supplier.submit(adapter=stranger)

    assert (reply.verdict, reply.code) == (Verdict.NOT_EXECUTED, "1001")
    assert len(supplier.simulator.ledger) == 0


async def test_query_by_a_stranger_is_unknown(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    stranger = supplier.adapter_with({**CREDENTIALS, "userid": "B7654321"})

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

    reply = await signed_get(supplier, **({"game_userid": PHONE, "version": "6.0"} | params))

    assert b"<retcode>1003</retcode>" in reply.body
    assert len(supplier.simulator.ledger) == 0


async def test_wrong_version_is_refused_with_1003(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    params = {"cardid": "140101", "cardnum": "50", "sporder_id": "G1", "sporder_time": "20261122100000"}

    reply = await signed_get(supplier, **params, game_userid=PHONE, version="5.0")

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


# Callbacks (faults, retries and duplicates alike in every protocol: test_every_protocol.py)


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

    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(update={"refuse_rate": 1.0})
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
    url = OFPAY.adapter("http://sim").build_submit(charge).url
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
