"""The simulator's ledger and request log on their own: no sockets, no protocol."""

from __future__ import annotations

import asyncio

import pytest

from gateway.simulator import ChargeState, Fault, Ledger, LedgerEntry, Operation, RequestLog


def entry(upstream_order_id: str, account: str = "13800138000", **changes: object) -> LedgerEntry:
    fields: dict[str, object] = {
        "upstream_order_id": upstream_order_id,
        "account": account,
        "sku": None,
        "face_value_cents": 5000,
        "quantity": 1,
        "cost_cents": 4930,
        "supplier_order_id": "F1",
        "charged": True,
        "state": ChargeState.CHARGING,
        "accepted_at": 0.0,
    }
    return LedgerEntry(**(fields | changes))  # type: ignore[arg-type]


def test_charged_once_counts_what_puts_value_on_the_account() -> None:
    ledger = Ledger()
    ledger.add(entry("A", state=ChargeState.FAILED))
    ledger.add(entry("B", charged=False, state=ChargeState.NOT_CHARGED))
    assert not ledger.charged_once("13800138000")
    ledger.add(entry("C"))
    assert ledger.charged_once("13800138000")
    ledger.add(entry("D", state=ChargeState.SUCCEEDED))
    assert not ledger.charged_once("13800138000")
    assert [e.upstream_order_id for e in ledger.charges()] == ["A", "C", "D"]
    assert [e.upstream_order_id for e in ledger.entries()] == ["A", "B", "C", "D"]
    assert ledger.charges_for("other") == []


def test_an_id_is_added_once() -> None:
    ledger = Ledger()
    ledger.add(entry("A"))
    with pytest.raises(KeyError):
        ledger.add(entry("A"))


async def test_wait_for_wakes_on_the_change_that_satisfies_it() -> None:
    ledger = Ledger()
    ledger.add(entry("A"))

    async def finish() -> None:
        await asyncio.sleep(0)
        ledger.update("A", submissions=2)
        await asyncio.sleep(0)
        ledger.update("A", state=ChargeState.SUCCEEDED)

    task = asyncio.create_task(finish())
    async with asyncio.timeout(1):
        await ledger.wait_for(lambda book: book["A"].state.final)
    await task
    assert ledger["A"].submissions == 2


@pytest.mark.parametrize(
    ("times", "seconds", "most"),
    [
        ([], 1.0, 0),
        ([0.0], 1.0, 1),
        ([0.0, 0.5, 0.99, 1.0, 1.2], 1.0, 4),
        ([0.0, 1.0, 2.0, 3.0], 1.0, 1),
        ([0.0, 0.1, 0.2, 5.0, 5.0, 5.0, 5.9, 6.0], 1.0, 4),
        ([0.0, 0.1, 0.2, 5.0], 0.15, 2),
    ],
)
def test_max_in_window(times: list[float], seconds: float, most: int) -> None:
    log = RequestLog()
    for at in times:
        log.record(at, Operation.SUBMIT)
    assert log.max_in_window(seconds) == most


def test_max_in_window_per_operation_and_capacity() -> None:
    log = RequestLog(capacity=3)
    for at, operation in [
        (0.0, Operation.SUBMIT),
        (0.1, Operation.QUERY),
        (0.2, Operation.SUBMIT),
        (0.3, Operation.QUERY),
    ]:
        log.record(at, operation)
    assert len(log) == 3
    assert log.max_in_window(1.0, Operation.QUERY) == 2
    assert log.max_in_window(1.0, Operation.SUBMIT) == 1


def test_faults_are_counted_per_entry_and_per_request() -> None:
    ledger = Ledger()
    ledger.add(entry("A", faults=frozenset({Fault.RESET, Fault.LAG})))
    ledger.add(entry("B", faults=frozenset({Fault.LAG})))
    ledger.add(entry("C"))
    assert [e.upstream_order_id for e in ledger.with_fault(Fault.LAG)] == ["A", "B"]
    assert [e.upstream_order_id for e in ledger.with_fault(Fault.RESET)] == ["A"]
    assert ledger.with_fault(Fault.CRASH) == []

    log = RequestLog()
    log.record(0.0, Operation.SUBMIT, Fault.RESET)
    log.record(0.1, Operation.QUERY, Fault.LAG)
    log.record(0.2, Operation.QUERY)
    assert [r.at for r in log.requests(fault=Fault.LAG)] == [0.1]
    assert [r.at for r in log.requests(Operation.QUERY)] == [0.1, 0.2]
    assert log.requests(Operation.SUBMIT, fault=Fault.LAG) == []


@pytest.mark.parametrize(
    ("state", "opposite"),
    [
        (ChargeState.SUCCEEDED, ChargeState.FAILED),
        (ChargeState.PARTIAL, ChargeState.FAILED),
        (ChargeState.FAILED, ChargeState.SUCCEEDED),
    ],
)
def test_the_opposite_of_an_entry_is_what_a_forger_claims(state: ChargeState, opposite: ChargeState) -> None:
    original = entry("A", state=state, delivered_cents=2500)
    assert original.opposite().state is opposite
    assert original.opposite().delivered_cents is None
    assert original.opposite().upstream_order_id == "A"


def test_the_ledger_forgets_the_earliest_settled_entries_beyond_its_bound() -> None:
    ledger = Ledger(max_settled=2)
    ledger.add(entry("A"))  # charging: kept whatever the bound
    ledger.add(entry("B", state=ChargeState.SUCCEEDED))
    ledger.add(entry("C", charged=False, state=ChargeState.NOT_CHARGED))  # refused: settled at once
    assert ledger.forgotten == 0
    ledger.add(entry("D", state=ChargeState.FAILED))
    assert "B" not in ledger
    assert ledger.forgotten == 1
    ledger.update("A", state=ChargeState.SUCCEEDED)  # settles last, so it outlives C
    assert [e.upstream_order_id for e in ledger.entries()] == ["A", "D"]
    assert ledger.forgotten == 2
    with pytest.raises(KeyError):
        ledger.update("B", submissions=2)
    ledger.add(entry("B"))  # a forgotten id is as if never submitted
    assert ledger["B"].state is ChargeState.CHARGING


def test_an_entry_still_charging_is_never_forgotten() -> None:
    ledger = Ledger(max_settled=1)
    ledger.add(entry("open"))
    for i in range(100):
        ledger.add(entry(f"done-{i}", state=ChargeState.SUCCEEDED))
        ledger.update(f"done-{i}", callbacks_sent=1)  # changes to a settled entry do not queue it again
    assert [e.upstream_order_id for e in ledger.entries()] == ["open", "done-99"]
    assert ledger.forgotten == 99
    assert len(ledger._settled) == 1


def test_the_ledger_and_request_log_defaults_hold_a_test_run_whole() -> None:
    ledger, log = Ledger(), RequestLog()
    for i in range(5000):
        ledger.add(entry(f"U{i}", state=ChargeState.SUCCEEDED))
        log.record(float(i), Operation.SUBMIT)
    assert len(ledger) == 5000
    assert ledger.forgotten == 0
    assert len(log) == 5000
    with pytest.raises(ValueError, match="at least one"):
        Ledger(max_settled=0)
