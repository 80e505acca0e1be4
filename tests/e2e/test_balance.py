"""Balance watch and balance-aware routing end to end (CONTRACT.md §9, §12), over real sockets.

The simulators keep a real balance and remember every submit they refused for it: once the gateway
has read a supplier's balance, none of its submits may be refused so, and orders flow to the next
offer instead of failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from aiohttp import ClientSession

from gateway.simulator import Operation
from tests.e2e.harness import Deployment, Gateway, SupplierSpec
from tests.e2e.test_operations import admin_url, scrape

AUTH: Final = {"Authorization": "Bearer admin-token"}
HOUR: Final = {"check_every": "1h"}  # no periodic re-poll within a test: only the first, or one asked for


async def supplier_views(d: Deployment) -> dict[str, dict[str, Any]]:
    async with (
        ClientSession() as session,
        session.get(admin_url(d) + "/admin/suppliers", headers=AUTH) as response,
    ):
        assert response.status == 200
        body = await response.json()
    return {view["name"]: view for view in body["suppliers"]}


async def until(d: Deployment, name: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The supplier's admin view once `predicate` holds (bounded, so a bug fails instead of hanging)."""
    async with asyncio.timeout(10):
        while True:
            view = (await supplier_views(d))[name]
            if predicate(view):
                return view
            await asyncio.sleep(0.05)


async def test_a_supplier_running_dry_is_routed_around_once_its_balance_is_known(gateway: Gateway) -> None:
    d = await gateway(
        {
            # 200 yuan pays for four 49.30 top-ups and not a fifth.
            "dry": SupplierSpec(knobs={"balance": 20_000}, extra={"balance": {**HOUR, "low": "1000"}}),
            "backup": SupplierSpec(extra={"balance": HOUR}),
        }
    )
    view = await until(d, "dry", lambda v: v["balance"] is not None)
    assert (view["balance"], view["balance_low"]) == ("200", True)
    assert view["balance_checked_at"].endswith("Z")

    suppliers = []
    for number in range(6):
        _, order = await d.shop.place(order_id=f"DRY-{number}", wait_seconds=5)
        assert order["status"] == "succeeded", order
        suppliers.append([attempt["supplier"] for attempt in order["attempts"]])

    # Skipped, never refused: orders five and six went straight to the next offer.
    assert suppliers == [["dry"]] * 4 + [["backup"]] * 2
    dry = d.simulators["dry"]
    assert dry.account.refusals == []
    assert len(dry.ledger.charges()) == 4
    assert dry.account.balance_cents == 280

    # The next poll comes when the gateway's clock says so, and shows what the orders spent.
    d.clock.advance(3600)
    view = await until(d, "dry", lambda v: v["balance"] == "2.80")
    assert view["balance_low"] is True
    backup = (await supplier_views(d))["backup"]
    assert (backup["balance"], backup["balance_low"]) == ("999901.40", False)  # 1000000 - 2 x 49.30
    # What GatewaySupplierBalanceLow fires on (config/prometheus/alerts.yml): the dry one only.
    metrics = await scrape(d)
    assert metrics[("gateway_supplier_balance_low", (("supplier", "dry"),))] == 1
    assert metrics[("gateway_supplier_balance_low", (("supplier", "backup"),))] == 0


async def test_balance_gauges_appear_with_the_first_read(gateway: Gateway) -> None:
    d = await gateway({"main": SupplierSpec(knobs={"balance": 1_234_567}, extra={"balance": HOUR})})
    await until(d, "main", lambda v: v["balance"] == "12345.67")

    samples = await scrape(d)

    assert samples["gateway_supplier_balance", (("supplier", "main"),)] == 12345.67
    checked = samples["gateway_supplier_balance_checked_timestamp_seconds", (("supplier", "main"),)]
    assert checked > 1_700_000_000


async def test_an_unreadable_balance_stays_unknown_and_does_not_block(gateway: Gateway) -> None:
    # The gateway signs with a secret the simulator does not know: every balance call is refused.
    wrong = {"app_key": "demo-app-key", "app_secret": "wrong-secret"}
    d = await gateway({"main": SupplierSpec(extra={"balance": HOUR, "credentials": wrong})})
    main = d.simulators["main"]
    async with asyncio.timeout(10):
        while True:  # until the first balance call has been answered (refused)
            if main.balance_requests.requests(Operation.BALANCE):
                break
            await asyncio.sleep(0.05)

    view = (await supplier_views(d))["main"]
    assert (view["balance"], view["balance_checked_at"], view["balance_low"]) == (None, None, False)
    assert ("gateway_supplier_balance", (("supplier", "main"),)) not in await scrape(d)
    # Unknown never blocks: the order is sent (and refused for its signature, not skipped).
    _, order = await d.shop.place(order_id="UNKNOWN-1", wait_seconds=5)
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [("main", "not_executed")]


async def test_a_balance_insufficient_refusal_triggers_a_re_poll_and_the_next_offer(gateway: Gateway) -> None:
    d = await gateway(
        {"main": SupplierSpec(extra={"balance": HOUR}), "backup": SupplierSpec(extra={"balance": HOUR})}
    )
    await until(d, "main", lambda v: v["balance"] is not None)
    main = d.simulators["main"]
    main.account.set(0)  # spent behind the gateway's back (another client of the same account)
    assert len(main.account.reads) == 1

    _, order = await d.shop.place(order_id="REPOLL-1", wait_seconds=5)

    assert order["status"] == "succeeded", order
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
        ("main", "not_executed"),
        ("backup", "succeeded"),
    ]
    assert len(main.account.refusals) == 1
    # Read again at once (check_every is an hour), and from then on skipped without a refusal.
    await until(d, "main", lambda v: v["balance"] == "0")
    assert len(main.account.reads) == 2
    _, order = await d.shop.place(order_id="REPOLL-2", wait_seconds=5)
    assert [a["supplier"] for a in order["attempts"]] == ["backup"]
    assert len(main.account.refusals) == 1
