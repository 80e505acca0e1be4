"""Every simulator keeps a real prepaid balance: charges lower it, failures refund it, top-ups raise it.

Driven over a real socket by each protocol's real adapter, whose balance call must read it back.
"""

from __future__ import annotations

import asyncio
from typing import Final

import pytest

from adapters.interface import Verdict
from gateway.clock import ManualClock
from gateway.config.model import TopUpConfig
from gateway.simulator import ChargeState
from gateway.simulator.account import PrepaidAccount
from gateway.simulator.traffic import Operation
from tests.simulator.conftest import PHONE, MakeSupplier, Supplier
from tests.simulator.protocols import ALL, DAYUANREN, FULU, JUHE, OFPAY

NAMES: Final = [protocol.name for protocol in ALL]
COST: Final = 4930  # what every simulator charges for the default 50-yuan top-up
every_protocol = pytest.mark.parametrize("protocol", ALL, ids=NAMES)


async def read_balance(supplier: Supplier) -> int | None:
    adapter = supplier.adapter
    return adapter.parse_balance(await supplier.send(adapter.build_balance(1_795_312_800.0))).balance_cents


@every_protocol
async def test_the_balance_call_answers_the_starting_balance(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(balance=12_345_67)

    assert await read_balance(supplier) == 12_345_67
    assert [read.balance_cents for read in supplier.simulator.account.reads] == [12_345_67]
    assert [r.operation for r in supplier.simulator.balance_requests.requests()] == [Operation.BALANCE]
    assert len(supplier.simulator.requests) == 0  # order traffic only


@every_protocol
async def test_every_charge_lowers_the_balance(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(balance=20_000, success_rate=1.0)

    for _ in range(3):
        assert (await supplier.submit()).verdict is Verdict.PROCESSING

    assert await read_balance(supplier) == 20_000 - 3 * COST
    async with asyncio.timeout(5):
        await supplier.simulator.idle()
    assert supplier.simulator.account.balance_cents == 20_000 - 3 * COST  # successes keep the charge


@pytest.mark.parametrize(
    ("protocol", "code"),
    [(FULU, "3004"), (JUHE, "208503"), (OFPAY, "1005"), (DAYUANREN, "1002")],
    ids=NAMES,
)
async def test_a_charge_beyond_the_balance_is_refused_with_the_balance_code(
    make_supplier: MakeSupplier, code: str
) -> None:
    supplier = await make_supplier(balance=COST + COST - 1, success_rate=1.0)
    paid = supplier.new_id()
    assert (await supplier.submit(paid)).verdict is Verdict.PROCESSING
    refused_id = supplier.new_id()

    refused = await supplier.submit(refused_id)

    assert (refused.verdict, refused.code, refused.outcome.value) == (
        Verdict.BALANCE_INSUFFICIENT,
        code,
        "not_executed",
    )
    ledger = supplier.simulator.ledger
    assert ledger[refused_id].state is ChargeState.NOT_CHARGED
    assert [entry.upstream_order_id for entry in ledger.charges_for(PHONE)] == [paid]
    (refusal,) = supplier.simulator.account.refusals
    assert (refusal.upstream_order_id, refusal.cost_cents, refusal.balance_cents) == (
        refused_id,
        COST,
        COST - 1,
    )
    assert await read_balance(supplier) == COST - 1  # nothing was taken
    assert (await supplier.query(refused_id)).verdict is Verdict.NOT_FOUND


@every_protocol
async def test_a_failed_charge_is_refunded(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(balance=10_000, success_rate=0.0)

    await supplier.submit()
    assert supplier.simulator.account.balance_cents == 10_000 - COST
    async with asyncio.timeout(5):
        await supplier.simulator.idle()

    assert await read_balance(supplier) == 10_000


@every_protocol
async def test_a_refused_fate_charges_nothing(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(balance=10_000, refuse_rate=1.0)

    assert (await supplier.submit()).verdict is Verdict.NOT_EXECUTED

    assert supplier.simulator.account.balance_cents == 10_000
    assert supplier.simulator.account.refusals == []


@every_protocol
async def test_top_ups_follow_the_simulators_clock(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, balance=0, top_up=TopUpConfig(amount=10_000, every=60.0))
    assert (await supplier.submit()).verdict is Verdict.BALANCE_INSUFFICIENT

    clock.advance(59.0)
    assert await read_balance(supplier) == 0
    clock.advance(61.0)
    assert await read_balance(supplier) == 20_000
    assert (await supplier.submit()).verdict is Verdict.PROCESSING
    assert await read_balance(supplier) == 20_000 - COST


@every_protocol
async def test_a_wrongly_signed_balance_call_is_refused(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier()
    other = {key: value + "-wrong" for key, value in supplier.protocol.credentials.items()}

    assert (await read_balance_with(supplier, other)) is None
    assert supplier.simulator.account.reads == []


async def read_balance_with(supplier: Supplier, credentials: dict[str, str]) -> int | None:
    adapter = supplier.adapter_with(credentials)
    return adapter.parse_balance(await supplier.send(adapter.build_balance(1_795_312_800.0))).balance_cents


def test_account_top_ups_count_from_creation_whenever_looked_at() -> None:
    clock = ManualClock()
    account = PrepaidAccount(500, clock, top_up_cents=100, top_up_every=10.0)
    clock.advance(35.0)
    assert account.charge("a", 700)
    assert account.balance_cents == 100
    clock.advance(5.0)
    assert account.balance_cents == 200
    account.set(0)
    assert not account.charge("b", 1)
    assert [r.upstream_order_id for r in account.refusals] == ["b"]
