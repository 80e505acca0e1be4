"""Whether a reload may send a supplier elsewhere: open attempts, requests around the store read, the scan."""

from __future__ import annotations

from gateway.reconfiguration import OPEN_SCAN_LIMIT, OpenAttempts, Traffic, move_problems

MOVED = {"a": ("base_url",)}
IDLE = {"a": Traffic(admissions=7, inflight=0)}


def test_no_open_attempt_and_no_traffic_lets_the_move_through() -> None:
    assert move_problems(MOVED, {"a": OpenAttempts((), complete=True)}, IDLE, IDLE) == []


def test_open_attempts_are_named_a_few_and_counted() -> None:
    ids = tuple(f"G{i}" for i in range(5))
    [problem] = move_problems(MOVED, {"a": OpenAttempts(ids, complete=True)}, IDLE, IDLE)
    assert problem.path == "suppliers.a.base_url"
    assert 'supplier "a" has 5 open attempt(s) (G0, G1, G2, ...)' in problem.message
    assert "G3" not in problem.message


def test_a_request_admitted_while_the_store_was_read_refuses_the_move() -> None:
    # It may have opened, sent and recorded an attempt after the read: nothing in the store shows it.
    after = {"a": Traffic(admissions=8, inflight=0)}
    [problem] = move_problems(MOVED, {"a": OpenAttempts((), complete=True)}, IDLE, after)
    assert 'supplier "a" is being sent requests' in problem.message


def test_a_request_under_way_when_the_store_was_read_refuses_the_move() -> None:
    before = {"a": Traffic(admissions=7, inflight=1)}
    after = {"a": Traffic(admissions=7, inflight=0)}
    assert move_problems(MOVED, {"a": OpenAttempts((), complete=True)}, before, after)


def test_a_scan_that_hit_its_limit_cannot_clear_a_move() -> None:
    [problem] = move_problems(MOVED, {"a": OpenAttempts((), complete=False)}, IDLE, IDLE)
    assert f"more than {OPEN_SCAN_LIMIT} orders are open" in problem.message
