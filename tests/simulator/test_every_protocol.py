"""What every protocol's simulator must do alike: refusals, fault knobs and callback delivery.

Each test runs once per protocol, through that protocol's real adapter, with the codes and messages
each protocol uses in a table; the rest of what a protocol says is tested in its own module.
"""

from __future__ import annotations

import asyncio

import pytest

from adapters.interface import Verdict
from gateway.simulator import ChargeState
from tests.simulator.conftest import PHONE, MakeSupplier
from tests.simulator.protocols import ALL, DAYUANREN, FULU, JUHE, OFPAY

NAMES = [protocol.name for protocol in ALL]
"""Test ids of a parametrization with one row per protocol, in `ALL`'s order."""

# Parametrizing `protocol` overrides the fixture of that name, which `make_supplier` reads.
every_protocol = pytest.mark.parametrize("protocol", ALL, ids=NAMES)


@pytest.mark.parametrize(
    ("protocol", "cost_cents"),
    # ofpay answers a query with the state alone; dayuanren's entries carry no price.
    [(FULU, 4930), (JUHE, 4930), (OFPAY, None), (DAYUANREN, None)],
    ids=NAMES,
)
async def test_query_while_charging_says_processing(
    make_supplier: MakeSupplier, cost_cents: int | None
) -> None:
    supplier = await make_supplier(result_after=5.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    answer = await supplier.query(order_id)

    assert (answer.verdict, answer.cost_cents) == (Verdict.PROCESSING, cost_cents)


@pytest.mark.parametrize(
    ("protocol", "code", "message"),
    [
        (FULU, "3007", "外部订单号已存在"),
        (JUHE, "208509", "订单号重复"),
        (OFPAY, "1009", "订单号已存在"),
        (DAYUANREN, "1005", "相同订单号不能提单"),
    ],
    ids=NAMES,
)
async def test_reused_id_is_refused_as_a_duplicate_and_charged_once(
    make_supplier: MakeSupplier, code: str, message: str
) -> None:
    supplier = await make_supplier()
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    again = await supplier.submit(order_id)

    assert (again.verdict, again.code, again.message) == (Verdict.UNKNOWN, code, message)
    ledger = supplier.simulator.ledger
    assert ledger[order_id].submissions == 2
    assert ledger.duplicates() == [ledger[order_id]]
    assert len(ledger.charges_for(PHONE)) == 1


@pytest.mark.parametrize(
    ("protocol", "code", "message"),
    [
        (FULU, "3003", "库存不足"),
        (JUHE, "208508", "订单请求失败，请重试"),
        (OFPAY, "1003", "商品暂时缺货"),
        (DAYUANREN, "1", "通道维护中"),
    ],
    ids=NAMES,
)
async def test_refuse_rate_one_charges_nothing(make_supplier: MakeSupplier, code: str, message: str) -> None:
    supplier = await make_supplier(refuse_rate=1.0)
    order_id = supplier.new_id()

    refused = await supplier.submit(order_id)

    assert (refused.verdict, refused.code, refused.message) == (Verdict.NOT_EXECUTED, code, message)
    assert supplier.simulator.ledger.charges() == []
    assert supplier.simulator.ledger[order_id].state is ChargeState.NOT_CHARGED
    assert (await supplier.query(order_id)).verdict is Verdict.NOT_FOUND
    async with asyncio.timeout(2):
        await supplier.simulator.idle()
    assert supplier.gateway.replies == []


@every_protocol
async def test_error_rate_one_charges_and_answers_500(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(error_rate=1.0)
    order_id = supplier.new_id()

    reply = await supplier.send(supplier.adapter.build_submit(supplier.charge(order_id)))

    assert reply.status == 500
    assert supplier.adapter.parse_submit(order_id, reply).verdict is Verdict.UNKNOWN
    assert supplier.simulator.ledger[order_id].charged
    (callback,) = await supplier.gateway.callbacks(1)
    assert callback.verdict is Verdict.SUCCEEDED


@every_protocol
async def test_garbage_rate_one_charges_and_answers_unreadably(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(garbage_rate=1.0)

    answers = [await supplier.submit() for _ in range(12)]

    assert {answer.verdict for answer in answers} == {Verdict.UNKNOWN}
    assert {answer.code for answer in answers} == {None}  # nothing was read, not even a code
    assert len(supplier.simulator.ledger.charges()) == 12


@every_protocol
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
        await supplier.listener.close()  # the hung request is let go rather than awaited


@every_protocol
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


@every_protocol
async def test_duplicated_callback_arrives_twice(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(callback_duplicate_rate=1.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)

    first, second = await supplier.gateway.callbacks(2)

    assert first == second
    assert first.upstream_order_id == order_id
