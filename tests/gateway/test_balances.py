"""Balance-aware admission (CONTRACT.md §9): the arithmetic of holds and reads, the gate, the config."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.interface import SupplierReply, Verdict
from gateway.balance import SupplierBalance
from gateway.clock import ManualClock
from gateway.config.loader import ConfigError, parse_config
from gateway.config.model import BalanceConfig, SimulateConfig, TopUpConfig
from gateway.metrics import Metrics
from gateway.ratelimit import MemoryRateState
from gateway.suppliers import Permit, Refusal, Supplier, build_suppliers

CONFIG = """
suppliers:
  s:
    protocol: fulu
    base_url: "http://127.0.0.1:1"
    credentials: {app_key: k, app_secret: s}
    rate_limit: {rate: 1000, per: 1s, burst: 100, max_wait: 0s}
    balance: {check_every: 30s, low: "500", reserve: "2"}
"""


@pytest.fixture
def supplier() -> Supplier:
    config = parse_config(CONFIG, {})
    return build_suppliers(
        config, Metrics(), clock=ManualClock(), rng=random.Random(1), rate_state=MemoryRateState()
    )["s"]


def reply(verdict: Verdict) -> SupplierReply:
    return SupplierReply(upstream_order_id="G1", verdict=verdict)


async def permit(supplier: Supplier, cost_cents: int) -> Permit:
    admitted = await supplier.admit(cost_cents=cost_cents)
    assert isinstance(admitted, Permit), admitted
    return admitted


def test_an_unknown_balance_covers_anything() -> None:
    balance = SupplierBalance()
    assert balance.available_cents is None
    assert balance.covers(10**12)
    assert not balance.low(1)


def test_holds_count_until_released_or_reflected_by_a_read() -> None:
    balance = SupplierBalance()
    balance.read(10_000, 1.0, frozenset())
    answered, refused, open_ = balance.hold(3_000), balance.hold(2_000), balance.hold(1_000)
    assert balance.available_cents == 4_000
    balance.answered(answered)
    balance.release(refused)
    assert balance.available_cents == 6_000
    reflected = balance.begin_read()  # the answered submit is in what the supplier reports now
    assert reflected == frozenset({answered})
    balance.read(7_000, 2.0, reflected)
    assert balance.available_cents == 6_000  # the still open submit stays held
    balance.release(open_)
    assert (balance.available_cents, balance.checked_at) == (7_000, 2.0)


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), st.integers(0, 10_000)),
        st.tuples(st.sampled_from(["answered", "release"]), st.integers(0, 40)),
        st.tuples(st.just("read"), st.integers(-1_000, 1_000_000)),
    ),
    max_size=60,
)


@given(_STEPS)
def test_available_is_the_read_less_every_live_hold_after_any_sequence(
    steps: list[tuple[str, int]],
) -> None:
    balance = SupplierBalance()
    live: dict[int, int] = {}  # token -> cents, kept the slow way
    answered: set[int] = set()
    tokens: list[int] = []
    for step, value in steps:
        match step:
            case "hold":
                token = balance.hold(value)
                tokens.append(token)
                live[token] = value
            case "answered" if tokens:
                token = tokens[value % len(tokens)]
                balance.answered(token)
                if token in live:
                    answered.add(token)
            case "release" if tokens:
                token = tokens[value % len(tokens)]
                balance.release(token)
                live.pop(token, None)
                answered.discard(token)
            case "read":
                balance.read(value, at=0.0, reflected=balance.begin_read())
                for token in answered:
                    live.pop(token, None)
                answered.clear()
        expected = None if balance.cents is None else balance.cents - sum(live.values())
        assert balance.available_cents == expected


def test_a_re_poll_request_wakes_the_listener() -> None:
    balance = SupplierBalance()
    woken: list[bool] = []
    balance.listen(lambda: woken.append(True))
    balance.request_check()
    assert balance.wanted
    assert woken == [True]


async def test_an_unknown_balance_never_blocks_admission(supplier: Supplier) -> None:
    assert isinstance(await supplier.admit(cost_cents=10**9), Permit)


async def test_an_offer_the_balance_cannot_cover_above_the_reserve_is_skipped(supplier: Supplier) -> None:
    supplier.balance.read(10_000, 1.0, frozenset())
    first = await permit(supplier, 4_930)
    assert supplier.balance.available_cents == 5_070
    # 5070 covers 4930 but not 4930 plus the reserve of 2 yuan.
    assert await supplier.admit(cost_cents=4_930) is Refusal.BALANCE_LOW
    assert supplier.inflight == 1  # a refusal takes no place and no slot
    await supplier.finish(first, reply(Verdict.NOT_EXECUTED), sent=True, seconds=0.1)
    assert supplier.balance.available_cents == 10_000
    assert isinstance(await supplier.admit(cost_cents=4_930), Permit)


async def test_queries_and_balance_calls_ignore_the_balance(supplier: Supplier) -> None:
    supplier.balance.read(0, 1.0, frozenset())
    assert isinstance(await supplier.admit(for_query=True), Permit)


@pytest.mark.parametrize(
    ("verdict", "held"),
    [
        (Verdict.PROCESSING, True),
        (Verdict.SUCCEEDED, True),
        (Verdict.UNKNOWN, True),
        (Verdict.FAILED, False),
        (Verdict.NOT_EXECUTED, False),
        (Verdict.BALANCE_INSUFFICIENT, False),
        (Verdict.THROTTLED, False),
    ],
)
async def test_finish_keeps_the_cost_of_what_may_have_been_charged(
    supplier: Supplier, verdict: Verdict, held: bool
) -> None:
    supplier.balance.read(10_000, 1.0, frozenset())
    await supplier.finish(await permit(supplier, 1_000), reply(verdict), sent=True, seconds=0.1)
    assert supplier.balance.available_cents == (9_000 if held else 10_000)
    # What may have been charged is in the next read, and held no longer.
    supplier.balance.read(9_000, 2.0, supplier.balance.begin_read())
    assert supplier.balance.available_cents == 9_000


async def test_abandon_releases_and_cancel_keeps_the_hold(supplier: Supplier) -> None:
    supplier.balance.read(10_000, 1.0, frozenset())
    await supplier.abandon(await permit(supplier, 1_000))
    assert supplier.balance.available_cents == 10_000
    supplier.cancel(await permit(supplier, 1_000))
    assert supplier.balance.available_cents == 9_000


async def test_a_balance_insufficient_refusal_asks_for_a_re_poll(supplier: Supplier) -> None:
    await supplier.finish(
        await permit(supplier, 1_000), reply(Verdict.BALANCE_INSUFFICIENT), sent=True, seconds=0.1
    )
    assert supplier.balance.wanted


def test_balance_low_follows_the_low_mark(supplier: Supplier) -> None:
    assert supplier.balance_low is False  # never read
    supplier.balance.read(499_99, 1.0, frozenset())
    assert supplier.balance_low is True
    supplier.balance.read(500_00, 2.0, frozenset())
    assert supplier.balance_low is False


def test_balance_config_defaults_and_values() -> None:
    config = parse_config(CONFIG, {})
    assert config.suppliers["s"].balance == BalanceConfig(check_every=30.0, low=50_000, reserve=200)
    bare = parse_config(CONFIG.replace('    balance: {check_every: 30s, low: "500", reserve: "2"}\n', ""), {})
    assert bare.suppliers["s"].balance == BalanceConfig(check_every=60.0, low=None, reserve=0)


def test_simulate_balance_and_top_up_config() -> None:
    text = CONFIG + '    simulate: {balance: "250.50", top_up: {amount: "100", every: 1m}}\n'
    simulate = parse_config(text, {}).suppliers["s"].simulate
    assert simulate is not None
    assert (simulate.balance, simulate.top_up) == (25_050, TopUpConfig(amount=10_000, every=60.0))
    assert SimulateConfig().balance == 100_000_000  # 1 000 000 yuan: more than any test spends
    assert SimulateConfig().top_up is None


def test_bad_balance_config_names_its_keys() -> None:
    text = CONFIG.replace('reserve: "2"', 'reserve: "-1"') + "    simulate: {top_up: {amount: 0}}\n"
    with pytest.raises(ConfigError) as raised:
        parse_config(text, {})
    fields = {problem.path for problem in raised.value.problems}
    assert "suppliers.s.balance.reserve" in fields
    assert {"suppliers.s.simulate.top_up.amount", "suppliers.s.simulate.top_up.every"} <= fields
