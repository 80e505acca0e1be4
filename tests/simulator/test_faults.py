"""The fault knobs over real sockets: resets, crashes that refuse connects, lagging queries, forged callbacks.

Each test asserts both what a client sees on the wire and that the simulator's records count the
fault, which is what the chaos test relies on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.interface import AccountKind, Charge, Verdict
from gateway.clock import ManualClock
from gateway.config.model import SimulateConfig
from gateway.simulator import ChargeState, Fault, Listener, Operation, Outage, build_simulator
from tests.simulator.conftest import (
    PHONE,
    QUICK,
    ConnectionLost,
    MakeSupplier,
    Supplier,
    is_refused,
    is_reset,
    no_resend,
)
from tests.simulator.protocols import ALL, DAYUANREN, FULU, JUHE, OFPAY

NAMES = [protocol.name for protocol in ALL]
every_protocol = pytest.mark.parametrize("protocol", ALL, ids=NAMES)


async def post_submit(supplier: Supplier, order_id: str, timeout_seconds: float = 2.0) -> Any:
    """Send a submit with a raw client and return what it raised (or its reply)."""
    request = supplier.adapter.build_submit(supplier.charge(order_id))
    try:
        return await supplier.send(request, timeout_seconds=timeout_seconds)
    except aiohttp.ClientError as error:
        return error


# reset_rate


@every_protocol
async def test_reset_charges_then_resets_the_connection_unanswered(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(reset_rate=1.0)
    order_id = supplier.new_id()

    assert is_reset(await post_submit(supplier, order_id))

    ledger = supplier.simulator.ledger
    assert ledger[order_id].charged
    assert ledger.with_fault(Fault.RESET) == [ledger[order_id]]
    assert [r.fault for r in supplier.simulator.requests.requests(Operation.SUBMIT)] == [Fault.RESET]
    # Only that connection went: the supplier still listens, and the charge runs to its result.
    await supplier.gateway.callbacks(1)
    assert supplier.listener.listening
    assert (await supplier.query(order_id)).verdict is Verdict.SUCCEEDED
    assert supplier.listener.outages == []


@pytest.mark.parametrize("protocol", [FULU], ids=["fulu"])
async def test_reset_is_drawn_from_the_seed_among_the_other_fates(make_supplier: MakeSupplier) -> None:
    stories = []
    for _ in range(2):
        supplier = await make_supplier(reset_rate=0.4, refuse_rate=0.2, lagging_rate=0.5, seed=11)
        answers = [await post_submit(supplier, supplier.new_id()) for _ in range(16)]
        stories.append(
            (
                [is_reset(answer) for answer in answers],
                [e.faults for e in supplier.simulator.ledger.entries()],
            )
        )
    assert stories[0] == stories[1]
    resets, faults = stories[0]
    assert 0 < sum(resets) < len(resets)
    assert sum(Fault.RESET in drawn for drawn in faults) == sum(resets)
    assert any(Fault.LAG in drawn for drawn in faults)


# crash_rate and refuse_for


@every_protocol
async def test_crash_charges_resets_and_refuses_connects_for_refuse_for(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, crash_rate=1.0, refuse_for=30.0)
    order_id = supplier.new_id()
    port = supplier.listener.port

    assert is_reset(await post_submit(supplier, order_id))
    assert is_refused(await post_submit(supplier, supplier.new_id()))
    clock.advance(29.9)
    await asyncio.sleep(0.05)  # several of the listener's clock polls
    assert is_refused(await post_submit(supplier, supplier.new_id()))

    clock.advance(0.1)
    async with asyncio.timeout(2):
        await supplier.listener.wait_listening()
    assert supplier.listener.port == port
    await supplier.gateway.callbacks(1)
    assert (await supplier.query(order_id)).verdict is Verdict.SUCCEEDED

    ledger = supplier.simulator.ledger
    assert len(ledger) == 1  # the refused submits never reached it
    assert ledger[order_id].charged
    assert ledger.with_fault(Fault.CRASH) == [ledger[order_id]]
    assert len(supplier.simulator.requests.requests(fault=Fault.CRASH)) == 1
    assert supplier.listener.outages == [Outage(started_at=1000.0, until=1030.0, connections_reset=1)]


@pytest.mark.parametrize("protocol", [DAYUANREN], ids=["dayuanren"])
async def test_a_crash_resets_every_other_open_connection_too(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, hang_rate=1.0, refuse_for=5.0)
    hung_id, crash_id = supplier.new_id(), supplier.new_id()
    hung = asyncio.create_task(post_submit(supplier, hung_id))
    async with asyncio.timeout(2):
        await supplier.simulator.ledger.wait_for(lambda ledger: hung_id in ledger)

    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(
        update={"hang_rate": 0.0, "crash_rate": 1.0}
    )
    assert is_reset(await post_submit(supplier, crash_id))

    assert is_reset(await hung)  # the hung request lost its connection with the crash
    assert [outage.connections_reset for outage in supplier.listener.outages] == [2]
    assert supplier.simulator.ledger.with_fault(Fault.CRASH) == [supplier.simulator.ledger[crash_id]]
    clock.advance(5.0)
    async with asyncio.timeout(2):
        await supplier.listener.wait_listening()


async def test_a_crash_without_a_listener_to_stop_is_an_error_idle_reports(aiohttp_server: Any) -> None:
    simulator = build_simulator(
        "juhe",
        credentials=JUHE.credentials,
        knobs=SimulateConfig(**{**QUICK, "crash_rate": 1.0}),
        callback_url="http://127.0.0.1:9/callbacks/juhe",
        callback_attempts=1,
    )
    server = await aiohttp_server(simulator.app)  # not Simulator.serve: nothing can stop listening
    request = JUHE.adapter(str(server.make_url(""))).build_submit(
        Charge(
            upstream_order_id="G1234567801",
            sku=JUHE.sku,
            account=PHONE,
            account_kind=AccountKind.MOBILE_CN,
            face_value_cents=5000,
            quantity=1,
            max_cost_cents=JUHE.max_cost_cents,
            callback_url="http://127.0.0.1:9/callbacks/juhe",
            timestamp=1_795_312_800.0,
        )
    )
    async with aiohttp.ClientSession(middlewares=(no_resend,)) as session:
        with pytest.raises(ConnectionLost):  # its own connection is still reset
            async with session.get(request.url) as response:
                await response.read()
    with pytest.raises(RuntimeError, match=r"Simulator\.serve"):
        async with asyncio.timeout(2):
            await simulator.idle()


async def test_a_crash_during_an_outage_extends_it() -> None:
    clock = ManualClock()
    app = web.Application()
    listener = Listener(app, "127.0.0.1", 0, clock=clock)
    await listener.start()
    try:
        listener.crash(10.0)
        clock.advance(5.0)
        listener.crash(10.0)
        clock.advance(9.0)
        await asyncio.sleep(0.05)
        assert not listener.listening
        clock.advance(1.0)
        async with asyncio.timeout(2):
            await listener.wait_listening()
        assert [(o.started_at, o.until) for o in listener.outages] == [(1000.0, 1010.0), (1005.0, 1015.0)]
    finally:
        await listener.close()
        await listener.close()  # twice is harmless
    listener.crash(1.0)  # and a closed listener no longer crashes
    assert len(listener.outages) == 2


# lagging_rate and lag_for


@every_protocol
async def test_lagging_queries_say_not_found_for_lag_for_then_the_truth(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, lagging_rate=1.0, lag_for=10.0)
    order_id = supplier.new_id()

    assert (await supplier.submit(order_id)).verdict is Verdict.PROCESSING
    await supplier.gateway.callbacks(1)  # the result is final and reported: only queries lag
    assert (await supplier.query(order_id)).verdict is Verdict.NOT_FOUND
    clock.advance(9.99)
    assert (await supplier.query(order_id)).verdict is Verdict.NOT_FOUND
    clock.advance(0.01)
    assert (await supplier.query(order_id)).verdict is Verdict.SUCCEEDED

    entry = supplier.simulator.ledger[order_id]
    assert entry.charged
    assert entry.faults == {Fault.LAG}
    assert entry.lagging_until == entry.accepted_at + 10.0
    queries = supplier.simulator.requests.requests(Operation.QUERY)
    assert [query.fault for query in queries] == [Fault.LAG, Fault.LAG, None]


@pytest.mark.parametrize("protocol", [DAYUANREN], ids=["dayuanren"])
async def test_a_batch_query_hides_only_the_lagging_orders(make_supplier: MakeSupplier) -> None:
    clock = ManualClock()
    supplier = await make_supplier(clock=clock, lag_for=10.0)
    prompt, lagging = supplier.new_id(), supplier.new_id()
    await supplier.submit(prompt)
    supplier.simulator.knobs = supplier.simulator.knobs.model_copy(update={"lagging_rate": 1.0})
    await supplier.submit(lagging)
    await supplier.gateway.callbacks(2)

    answers = await supplier.query_many([prompt, lagging])

    assert {uid: answer.verdict for uid, answer in answers.items()} == {
        prompt: Verdict.SUCCEEDED,
        lagging: Verdict.NOT_FOUND,
    }
    assert supplier.simulator.ledger.with_fault(Fault.LAG) == [supplier.simulator.ledger[lagging]]
    assert len(supplier.simulator.requests.requests(Operation.QUERY, fault=Fault.LAG)) == 1


# forged_callback_rate


@pytest.mark.parametrize(
    ("protocol", "success_rate", "forged", "received"),
    [
        # Every protocol: one forged report of the opposite result, with a bad signature.
        (FULU, 1.0, 1, [Verdict.SUCCEEDED]),
        (FULU, 0.0, 1, [Verdict.FAILED]),
        (DAYUANREN, 1.0, 1, [Verdict.SUCCEEDED]),
        (DAYUANREN, 0.0, 1, [Verdict.FAILED]),
        (OFPAY, 1.0, 1, [Verdict.SUCCEEDED]),
        (OFPAY, 0.0, 1, [Verdict.FAILED]),
        # juhe's sign leaves `sta` out: a success also gets a validly signed "failed", which the
        # adapter cannot tell from the real thing and which arrives first.
        (JUHE, 1.0, 2, [Verdict.FAILED, Verdict.SUCCEEDED]),
        (JUHE, 0.0, 1, [Verdict.FAILED]),
    ],
    ids=[
        "fulu-success",
        "fulu-failure",
        "dyr-success",
        "dyr-failure",
        "ofpay-success",
        "ofpay-failure",
        "juhe-success",
        "juhe-failure",
    ],
)
async def test_forged_callbacks_claim_the_opposite_before_the_real_one(
    make_supplier: MakeSupplier, success_rate: float, forged: int, received: list[Verdict]
) -> None:
    supplier = await make_supplier(forged_callback_rate=1.0, success_rate=success_rate)
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    entry = supplier.simulator.ledger[order_id]
    assert entry.faults == {Fault.FORGED_CALLBACK}
    assert (entry.forged_callbacks_sent, entry.forged_callbacks_acknowledged) == (forged, forged - 1)
    assert (entry.callbacks_sent, entry.callbacks_acknowledged) == (1, 1)
    assert supplier.gateway.rejected == 1  # the badly signed one
    assert [reply.verdict for reply in supplier.gateway.replies] == received
    assert {reply.upstream_order_id for reply in supplier.gateway.replies} == {order_id}


@pytest.mark.parametrize("protocol", [FULU], ids=["fulu"])
async def test_forged_callbacks_go_out_even_when_the_real_one_is_dropped(make_supplier: MakeSupplier) -> None:
    supplier = await make_supplier(forged_callback_rate=1.0, callback_drop_rate=1.0)
    order_id = supplier.new_id()
    await supplier.submit(order_id)
    async with asyncio.timeout(2):
        await supplier.simulator.idle()

    entry = supplier.simulator.ledger[order_id]
    assert entry.state is ChargeState.SUCCEEDED
    assert (entry.forged_callbacks_sent, entry.callbacks_sent) == (1, 0)
    assert supplier.gateway.replies == []
    assert supplier.gateway.rejected == 1
