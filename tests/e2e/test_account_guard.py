"""The shop guards of CONTRACT.md §7 over real sockets, on every store: the duplicate guard, the per-account
limits and blocked accounts. Every refusal leaves no order (GET answers 404) and sends nothing to a supplier.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from gateway.guards import LEASE_SECONDS, china_day_start
from gateway.store.reservations import AccountClaim, AccountEntry
from tests.e2e.harness import SECRET, SHOP, Deployment, Gateway, SupplierSpec
from tests.e2e.test_admin_orders import Admin
from tests.e2e.test_shop_api import error_of
from tests.store.test_contract import store_url

ACCOUNT: Final = "13800138000"
OTHER: Final = "13900139000"
__all__ = ["store_url"]  # the store contract suite's fixture: every backend, by name


def shops(**guards: Any) -> dict[str, Any]:
    """The harness's demo shop with the given guard settings."""
    return {SHOP: {"secret": SECRET, "products": ["mobile.*"], "notify_hosts": ["127.0.0.1"], **guards}}


async def guarded(
    gateway: Gateway, store: str = "memory://", *, knobs: dict[str, Any] | None = None, **guards: Any
) -> Deployment:
    return await gateway({"fulu": SupplierSpec(knobs=knobs or {})}, store=store, shops=shops(**guards))


def submits(d: Deployment) -> int:
    return sum(len(sim.requests) for sim in d.simulators.values())


async def no_trace(d: Deployment, *order_ids: str, submitted: int) -> None:
    """None of `order_ids` was recorded, and the suppliers saw only the `submitted` requests of others."""
    for order_id in order_ids:
        status, body = await d.shop.get(order_id)
        assert status == 404, body
        error_of(body, "order_not_found")
    assert submits(d) == submitted


async def settled(d: Deployment, order_id: str) -> dict[str, Any]:
    return await d.shop.wait_for(order_id, lambda o: o["status"] != "processing")  # type: ignore[no-any-return]


# the duplicate guard


async def test_a_second_order_for_the_account_within_the_window_is_409_naming_the_first(
    gateway: Gateway,
) -> None:
    d = await guarded(gateway, duplicate_window="10m")
    assert (await d.shop.place(order_id="D-1", account=ACCOUNT))[0] == 201
    await settled(d, "D-1")

    status, body = await d.shop.place(order_id="D-2", account=ACCOUNT)

    assert status == 409
    error = error_of(body, "duplicate_suspected")
    assert error["details"] == [{"field": "order_id", "message": "D-1"}]
    assert "allow_duplicate" in error["message"]
    await no_trace(d, "D-2", submitted=1)
    # Another account, or the same one with allow_duplicate, is taken.
    assert (await d.shop.place(order_id="D-3", account=OTHER))[0] == 201
    assert (await d.shop.place(order_id="D-2", account=ACCOUNT, allow_duplicate=True))[0] == 201


async def test_allow_duplicate_is_not_part_of_the_orders_identity(gateway: Gateway) -> None:
    """It says how to take the request, not what the order is: a replay is the order, with or without it."""
    d = await guarded(gateway, duplicate_window="10m")
    await d.shop.place(order_id="D-1")
    status, first = await d.shop.place(order_id="D-2", allow_duplicate=True)
    assert status == 201

    same = await d.shop.place(order_id="D-2", allow_duplicate=True)
    without = await d.shop.place(order_id="D-2")
    original = await d.shop.place(order_id="D-1", allow_duplicate=False)

    assert [same[0], without[0], original[0]] == [200, 200, 200]
    assert same[1]["order_id"] == without[1]["order_id"] == first["order_id"] == "D-2"
    assert "allow_duplicate" not in first


async def test_allow_duplicate_must_be_a_boolean(gateway: Gateway) -> None:
    d = await guarded(gateway, duplicate_window="10m")

    status, body = await d.shop.place(order_id="D-1", allow_duplicate="yes")

    assert status == 400
    assert error_of(body, "invalid_request")["details"] == [
        {"field": "allow_duplicate", "message": "must be true or false"}
    ]
    await no_trace(d, "D-1", submitted=0)


async def test_the_window_passes_and_zero_turns_the_guard_off(gateway: Gateway) -> None:
    d = await guarded(gateway, duplicate_window="30s")
    await d.shop.place(order_id="D-1")
    await settled(d, "D-1")
    assert (await d.shop.place(order_id="D-2"))[0] == 409

    d.clock.advance(30)

    assert (await d.shop.place(order_id="D-2"))[0] == 201
    off = await guarded(gateway)
    assert [(await off.shop.place(order_id=f"X-{i}"))[0] for i in range(3)] == [201] * 3


async def test_an_order_that_ends_failed_frees_the_account(gateway: Gateway, store_url: str) -> None:
    d = await guarded(gateway, store_url, knobs={"success_rate": 0.0}, duplicate_window="10m")
    await d.shop.place(order_id="F-1")
    assert (await settled(d, "F-1"))["status"] == "failed"

    status, body = await d.shop.place(order_id="F-2", wait_seconds=2)

    assert status == 201, body


async def test_of_20_order_ids_for_one_account_at_once_exactly_one_is_accepted(
    gateway: Gateway, store_url: str
) -> None:
    d = await guarded(gateway, store_url, duplicate_window="10m")
    order_ids = [f"C-{i:02d}" for i in range(20)]

    answers = await asyncio.gather(*(d.shop.place(order_id=o, account=ACCOUNT) for o in order_ids))

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 1, 409: 19}, answers
    (winner,) = [body["order_id"] for status, body in answers if status == 201]
    for status, body in answers:
        if status == 409:
            assert error_of(body, "duplicate_suspected")["details"] == [
                {"field": "order_id", "message": winner}
            ]
    await settled(d, winner)
    await no_trace(d, *(o for o in order_ids if o != winner), submitted=1)


async def test_a_reservation_whose_order_never_came_lapses(gateway: Gateway) -> None:
    """A gateway that crashed between reserving and creating: its reservation holds for its lease, then a
    refusal looks the order up, finds none and lets the next order through."""
    d = await guarded(gateway, duplicate_window="1h")
    now = d.clock.now()
    crashed = AccountEntry(
        order_id="LOST-1",
        product="mobile.cmcc.50",
        value_cents=5_000,
        at=now,
        expires_at=now + 3_600,
        lease_until=now + LEASE_SECONDS,
    )
    claim = AccountClaim(
        shop=SHOP,
        account=ACCOUNT,
        entry=crashed,
        duplicate_since=None,
        day_start=china_day_start(now),
        max_orders=None,
        max_value_cents=None,
    )
    assert (await d.runtime.store.reserve_account(claim)).refusal is None

    status, body = await d.shop.place(order_id="N-1")
    assert status == 409
    assert error_of(body, "duplicate_suspected")["details"] == [{"field": "order_id", "message": "LOST-1"}]

    d.clock.advance(LEASE_SECONDS)
    assert (await d.shop.place(order_id="N-1"))[0] == 201


# per-account limits


async def test_the_orders_per_day_limit_refuses_the_next_with_429(gateway: Gateway) -> None:
    d = await guarded(gateway, account_limits={"orders_per_day": 2})
    assert [(await d.shop.place(order_id=f"L-{i}"))[0] for i in (1, 2)] == [201, 201]
    await settled(d, "L-2")

    status, body = await d.shop.place(order_id="L-3")

    assert status == 429
    error = error_of(body, "account_limit_exceeded")
    assert "2 orders" in error["message"]
    await no_trace(d, "L-3", submitted=2)
    assert (await d.shop.place(order_id="L-4", account=OTHER))[0] == 201


async def test_the_value_per_day_limit_adds_face_value_times_quantity(gateway: Gateway) -> None:
    d = await guarded(gateway, account_limits={"value_per_day": "120"})
    assert (await d.shop.place(order_id="V-1", quantity=2))[0] == 201  # 100 of 120
    await settled(d, "V-1")

    status, body = await d.shop.place(order_id="V-2")  # another 50

    assert status == 429
    assert "120" in error_of(body, "account_limit_exceeded")["message"]
    await no_trace(d, "V-2", submitted=1)


@pytest.mark.parametrize(("limit", "extra"), [(1, 9), (3, 12)])
async def test_n_plus_k_orders_at_once_accept_exactly_n(
    gateway: Gateway, store_url: str, limit: int, extra: int
) -> None:
    d = await guarded(gateway, store_url, account_limits={"orders_per_day": limit})

    answers = await asyncio.gather(*(d.shop.place(order_id=f"P-{i:02d}") for i in range(limit + extra)))

    assert Counter(status for status, _ in answers) == {201: limit, 429: extra}, answers
    refused = [f"P-{i:02d}" for i, (status, _) in enumerate(answers) if status == 429]
    accepted = [f"P-{i:02d}" for i, (status, _) in enumerate(answers) if status == 201]
    for order_id in accepted:
        await settled(d, order_id)
    await no_trace(d, *refused, submitted=limit)


async def test_failed_orders_do_not_count_toward_the_limit(gateway: Gateway, store_url: str) -> None:
    d = await guarded(gateway, store_url, knobs={"success_rate": 0.0}, account_limits={"orders_per_day": 1})
    await d.shop.place(order_id="L-1")
    assert (await settled(d, "L-1"))["status"] == "failed"

    assert (await d.shop.place(order_id="L-2"))[0] == 201


async def test_the_day_ends_at_midnight_china_time(gateway: Gateway) -> None:
    d = await guarded(gateway, account_limits={"orders_per_day": 1})
    midnight = china_day_start(d.clock.now()) + 86_400
    d.clock.advance(midnight - 5 - d.clock.now())  # 23:59:55 in Beijing
    await d.shop.place(order_id="M-1")
    await settled(d, "M-1")
    assert (await d.shop.place(order_id="M-2"))[0] == 429

    d.clock.advance(5)  # 00:00:00

    assert (await d.shop.place(order_id="M-2"))[0] == 201


async def test_the_checks_run_in_order_blocked_duplicate_limit(gateway: Gateway) -> None:
    d = await guarded(gateway, duplicate_window="10m", account_limits={"orders_per_day": 1})
    await d.shop.place(order_id="O-1")
    await settled(d, "O-1")

    duplicate = await d.shop.place(order_id="O-2")
    limited = await d.shop.place(order_id="O-2", allow_duplicate=True)
    await Admin(d).call("POST", "/admin/blocked-accounts", orjson.dumps({"account": ACCOUNT}))
    blocked = await d.shop.place(order_id="O-2")
    replayed = await d.shop.place(order_id="O-1")  # idempotency before every guard

    assert [duplicate[0], limited[0], blocked[0], replayed[0]] == [409, 429, 403, 200]
    error_of(duplicate[1], "duplicate_suspected")
    error_of(limited[1], "account_limit_exceeded")
    error_of(blocked[1], "account_blocked")
    await no_trace(d, "O-2", submitted=1)


# blocked accounts


async def block(admin: Admin, doc: Any, operator: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if operator is not None:
        headers["X-Operator"] = operator
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return await admin.call("POST", "/admin/blocked-accounts", body, headers)


async def test_a_blocked_account_is_refused_403_until_unblocked(gateway: Gateway) -> None:
    d = await guarded(gateway)
    admin = Admin(d)

    status, made = await block(admin, {"account": ACCOUNT, "note": "chargeback 2026-11"}, operator="li")
    assert status == 201
    assert made["account"] == ACCOUNT
    assert made["product"] == "*"
    assert made["until"] is None
    assert made["note"] == "chargeback 2026-11"
    assert made["operator"] == "li"
    status, listing = await admin.get("/admin/blocked-accounts")
    assert status == 200
    assert listing == {"blocked_accounts": [made], "count": 1}

    status, body = await d.shop.place(order_id="B-1")
    assert status == 403
    error = error_of(body, "account_blocked")
    assert "chargeback" not in error["message"]  # the note is for operators
    await no_trace(d, "B-1", submitted=0)
    assert (await d.shop.place(order_id="B-2", account=OTHER))[0] == 201

    status, removed = await admin.call("DELETE", f"/admin/blocked-accounts/{ACCOUNT}")
    assert status == 200
    assert removed == {"account": ACCOUNT, "removed": [made]}
    assert (await d.shop.place(order_id="B-1"))[0] == 201
    assert (await admin.get("/admin/blocked-accounts"))[1] == {"blocked_accounts": [], "count": 0}


async def test_a_block_holds_for_the_products_its_glob_matches_and_until_its_time(gateway: Gateway) -> None:
    d = await guarded(gateway)
    admin = Admin(d)
    assert (await block(admin, {"account": ACCOUNT, "product": "game.*"}))[0] == 201
    assert (await d.shop.place(order_id="G-1"))[0] == 201  # mobile.cmcc.50 is not a game

    until = "2099-01-01T08:00:00+08:00"
    status, made = await block(admin, {"account": OTHER, "product": "mobile.cmcc.*", "until": until})
    assert status == 201
    assert made["until"] == "2099-01-01T00:00:00.000Z"
    status, body = await d.shop.place(order_id="G-2", account=OTHER)
    assert status == 403
    assert "2099-01-01T00:00:00.000Z" in error_of(body, "account_blocked")["message"]
    status, one = await admin.get(f"/admin/blocked-accounts?account={OTHER}")
    assert [b["product"] for b in one["blocked_accounts"]] == ["mobile.cmcc.*"]


async def test_a_block_ends_at_its_until(gateway: Gateway) -> None:
    d = await guarded(gateway)
    soon = datetime.fromtimestamp(d.clock.now() + 60, UTC).isoformat()
    assert (await block(Admin(d), {"account": ACCOUNT, "until": soon}))[0] == 201
    assert (await d.shop.place(order_id="U-1"))[0] == 403

    d.clock.advance(61)

    assert (await d.shop.place(order_id="U-1"))[0] == 201
    assert (await Admin(d).get("/admin/blocked-accounts"))[1]["count"] == 0
    status, body = await Admin(d).call("DELETE", f"/admin/blocked-accounts/{ACCOUNT}")
    assert status == 404
    error_of(body, "not_found")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (b'{"account": "1380013', "body"),
        (b"[1]", "body"),
        ({"account": ACCOUNT, "until": "tomorrow"}, "until"),
        ({"account": ACCOUNT, "until": "2099-01-01T08:00:00"}, "until"),  # no offset: which zone?
        ({"account": ACCOUNT, "until": "2001-01-01T00:00:00Z"}, "until"),  # the past
        ({"account": ACCOUNT, "until": 4102444800}, "until"),
        # Year 10000 in UTC: no view could show it, and every order for the account would fail on it.
        ({"account": ACCOUNT, "until": "9999-12-31T23:59:59-01:00"}, "until"),
        ({"product": "*"}, "account"),
        ({"account": " 138"}, "account"),
        ({"account": ACCOUNT, "product": "a b"}, "product"),
        ({"account": ACCOUNT, "note": 5}, "note"),
        ({"account": ACCOUNT, "reason": "x"}, "reason"),
    ],
)
async def test_a_bad_block_request_is_400_naming_the_field(gateway: Gateway, doc: Any, field: str) -> None:
    d = await guarded(gateway)
    admin = Admin(d)

    status, body = await block(admin, doc)

    assert status == 400
    assert field in {detail["field"] for detail in error_of(body, "invalid_request")["details"]}
    assert (await admin.get("/admin/blocked-accounts"))[1]["count"] == 0


async def test_blocked_accounts_need_the_admin_token_and_a_valid_operator(gateway: Gateway) -> None:
    d = await guarded(gateway)

    status, body = await block(Admin(d, token="wrong"), {"account": ACCOUNT})
    assert status == 401
    error_of(body, "unauthenticated")
    status, body = await block(Admin(d), {"account": ACCOUNT}, operator="x" * 65)
    assert status == 400
    assert error_of(body, "invalid_request")["details"][0]["field"] == "X-Operator"
    status, body = await Admin(d).call("DELETE", f"/admin/blocked-accounts/{OTHER}")
    assert status == 404
    error_of(body, "not_found")
    status, body = await Admin(d).get("/admin/blocked-accounts?acount=1")
    assert status == 400
    assert error_of(body, "invalid_request")["details"][0]["field"] == "acount"


async def test_blocks_survive_a_restart(gateway: Gateway, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gateway.db'}"
    first = await guarded(gateway, store)
    assert (await block(Admin(first), {"account": ACCOUNT, "note": "fraud"}))[0] == 201
    await first.stop()

    second = await guarded(gateway, store)

    assert (await second.shop.place(order_id="R-1"))[0] == 403
    listing = (await Admin(second).get("/admin/blocked-accounts"))[1]
    assert [(b["account"], b["note"]) for b in listing["blocked_accounts"]] == [(ACCOUNT, "fraud")]


async def test_guards_hold_across_two_instances_on_redis(gateway: Gateway, redis_url: str) -> None:
    first = await guarded(gateway, redis_url, duplicate_window="10m")
    second = await guarded(gateway, redis_url, duplicate_window="10m")

    assert (await block(Admin(first), {"account": OTHER}))[0] == 201
    assert (await second.shop.place(order_id="I-1", account=OTHER))[0] == 403
    assert (await first.shop.place(order_id="I-2", account=ACCOUNT))[0] == 201
    status, body = await second.shop.place(order_id="I-3", account=ACCOUNT)
    assert status == 409
    assert error_of(body, "duplicate_suspected")["details"] == [{"field": "order_id", "message": "I-2"}]

    assert (await Admin(second).call("DELETE", f"/admin/blocked-accounts/{OTHER}"))[0] == 200
    assert (await first.shop.place(order_id="I-1", account=OTHER))[0] == 201
