"""The fulu simulator over real sockets, driven by the real FuluAdapter."""

from __future__ import annotations

import asyncio
import json

import pytest

from adapters.fulu import compact_json, sign
from adapters.interface import AccountKind, HttpRequest, Verdict
from gateway.clock import ManualClock
from gateway.config.model import SimulateConfig
from gateway.simulator import ChargeState, Operation, UnknownSimulator, build_simulator
from tests.simulator.conftest import MakeSupplier, SimulatedProtocol
from tests.simulator.protocols import FULU

CREDENTIALS = FULU.credentials


@pytest.fixture
def protocol() -> SimulatedProtocol:
    return FULU


async def test_submit_processing_then_signed_callback_then_query(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id)

    assert accepted.verdict is Verdict.PROCESSING
    assert accepted.code == "0"
    assert accepted.supplier_order_id == "F0000000000000001"
    assert accepted.cost_cents == 4930
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.upstream_order_id == order_id
    assert callback.verdict is Verdict.SUCCEEDED
    assert callback.supplier_order_id == "F0000000000000001"
    assert callback.cost_cents == 4930
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    entry = supplier.simulator.ledger[order_id]
    assert entry.state is ChargeState.SUCCEEDED
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (1, 1)
    assert supplier.simulator.ledger.charged_once("13800138000")
    answer = await supplier.query(order_id)
    assert (answer.verdict, answer.supplier_order_id, answer.cost_cents) == (
        Verdict.SUCCEEDED,
        entry.supplier_order_id,
        4930,
    )


async def test_declined_order_is_reported_failed(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(success_rate=0.0)
    order_id = supplier.new_id()

    assert (await supplier.submit(order_id)).verdict is Verdict.PROCESSING
    (callback,) = await supplier.gateway.callbacks(1)

    assert callback.verdict is Verdict.FAILED
    assert (await supplier.query(order_id)).verdict is Verdict.FAILED
    assert not supplier.simulator.ledger.charged_once("13800138000")


async def test_query_of_an_unknown_id_is_not_found(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()

    answer = await supplier.query("G000000000000000000000000000999")

    assert (answer.verdict, answer.code) == (Verdict.NOT_FOUND, "3006")


async def test_bad_signature_is_refused_with_1001(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    wrong = supplier.adapter_with({**CREDENTIALS, "app_secret": "wrong"})
    order_id = supplier.new_id()

    reply = wrong.parse_submit(order_id, await supplier.send(wrong.build_submit(supplier.charge(order_id))))

    assert (reply.verdict, reply.code, reply.message) == (Verdict.NOT_EXECUTED, "1001", "签名错误")
    assert len(supplier.simulator.ledger) == 0
    assert [r.operation for r in supplier.simulator.requests.requests()] == [Operation.SUBMIT]


async def test_unknown_app_key_is_refused_with_1002(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    stranger = supplier.adapter_with({**CREDENTIALS, "app_key": "stranger"})
    order_id = supplier.new_id()

    reply = stranger.parse_submit(
        order_id, await supplier.send(stranger.build_submit(supplier.charge(order_id)))
    )

    assert (reply.verdict, reply.code) == (Verdict.NOT_EXECUTED, "1002")


@pytest.mark.parametrize(
    "biz",
    [
        "not json",
        '{"charge_phone":"13800138000","charge_value":"50","customer_order_no":"G1"}',
        '{"charge_phone":"13800138000","charge_value":50}',
    ],
)
async def test_unreadable_business_fields_are_refused_with_2001(
    make_supplier: MakeSupplier, biz: str
) -> None:
    supplier = await make_supplier()
    params = {"app_key": "demo-app-key", "method": "fulu.order.mobile.add", "biz_content": biz}
    body = compact_json({**params, "sign": sign(params, "demo-app-secret")}).encode()
    url = supplier.url("/api/getway")

    reply = await supplier.send(HttpRequest(method="POST", url=url, body=body))

    assert json.loads(reply.body)["code"] == 2001
    assert len(supplier.simulator.ledger) == 0


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
    log = supplier.simulator.requests
    assert len(log) == 4
    assert log.max_in_window(1.0) == 3  # the throttled request was received all the same


async def test_dropped_callback_is_never_sent(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(callback_drop_rate=1.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    assert supplier.gateway.replies == []
    assert supplier.simulator.ledger[order_id].state is ChargeState.SUCCEEDED
    assert supplier.simulator.ledger[order_id].callbacks_sent == 0


async def test_callback_waits_for_result_after_and_callback_delay(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(result_after=0.03, callback_delay=0.03)
    loop = asyncio.get_running_loop()
    started = loop.time()

    await supplier.submit()
    await supplier.gateway.callbacks(1)

    assert loop.time() - started >= 0.06


async def test_knobs_can_be_replaced_while_running(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    loop = asyncio.get_running_loop()

    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(update={"latency": 0.15})
    started = loop.time()
    await supplier.submit()
    slow = loop.time() - started
    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(
        update={"latency": 0.0, "refuse_rate": 1.0}
    )
    refused = await supplier.submit()

    assert slow >= 0.15  # the replaced latency held the reply at least that long
    assert refused.verdict is Verdict.NOT_EXECUTED  # and the next replacement applied at once


async def test_direct_orders_take_face_value_from_the_catalog(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(catalog={"18221081": 1000})
    order_id = supplier.new_id()

    accepted = await supplier.submit(order_id, account_kind=AccountKind.QQ, account="10001", quantity=5)
    unknown = await supplier.submit(account_kind=AccountKind.QQ, account="10001", sku="999")

    assert (accepted.verdict, accepted.cost_cents) == (Verdict.PROCESSING, 4930)
    assert (unknown.verdict, unknown.code) == (Verdict.NOT_EXECUTED, "3001")
    entry = supplier.simulator.ledger[order_id]
    assert (entry.sku, entry.face_value_cents, entry.quantity, entry.account) == (
        "18221081",
        1000,
        5,
        "10001",
    )
    (callback,) = await supplier.gateway.callbacks(1)
    assert (callback.verdict, callback.cost_cents) == (Verdict.SUCCEEDED, 4930)


async def test_the_same_seed_tells_the_same_story(make_supplier: MakeSupplier) -> None:
    mixed = {"refuse_rate": 0.3, "error_rate": 0.3, "garbage_rate": 0.2, "success_rate": 0.5, "seed": 42}
    stories = []
    for _ in range(2):
        supplier = await make_supplier(**mixed)
        await asyncio.gather(*(supplier.submit(f"G{n:030d}") for n in range(30)))
        async with asyncio.timeout(2):
            await supplier.simulator.idle()
        # Fates are drawn in arrival order, which is also the ledger's order.
        stories.append([(entry.charged, entry.state) for entry in supplier.simulator.ledger.entries()])

    assert stories[0] == stories[1]
    assert len({state for _, state in stories[0]}) > 1


async def test_closing_the_server_cancels_pending_work(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(result_after=30.0)
    for _ in range(3):
        await supplier.submit()

    async with asyncio.timeout(2):
        await supplier.listener.close()

    assert {entry.state for entry in supplier.simulator.ledger.entries()} == {ChargeState.CHARGING}
    async with asyncio.timeout(1):
        await supplier.simulator.idle()


def test_unknown_protocol_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownSimulator, match=r"valid: .*fulu"):
        build_simulator("nope", credentials={}, knobs=SimulateConfig(), callback_url="http://h/cb")


def test_fulu_needs_a_callback_url_and_credentials() -> None:
    with pytest.raises(ValueError, match="callback_url"):
        build_simulator("fulu", credentials=CREDENTIALS, knobs=SimulateConfig())
    with pytest.raises(ValueError, match="app_secret"):
        build_simulator(
            "fulu", credentials={"app_key": "k"}, knobs=SimulateConfig(), callback_url="http://h/cb"
        )
