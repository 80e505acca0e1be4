"""Shop notifications: signed, at least once, retried with backoff across restarts, never in the way."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e.harness import SECRET, Deployment, Gateway, ShopEndpoint, SupplierSpec

NOTIFY = {"timeout": "1s", "max_attempts": 3, "backoff": {"initial": "10s", "max": "1m"}}


async def notification(d: Deployment, order_id: str) -> Any:
    order = await d.runtime.store.get_order("demo", order_id)
    assert order is not None
    return order.notification


async def test_a_final_order_is_posted_to_the_shop_signed(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    _, order = await d.shop.place(order_id="N-1", notify_url=url, wait_seconds=5)
    posted = await endpoint.next_post()
    assert endpoint.bad_signatures == 0
    assert posted["order_id"] == "N-1"
    assert posted["status"] == order["status"] == "succeeded"
    await d.runtime.notifier.idle()
    note = await notification(d, "N-1")
    assert note.delivered_at is not None
    assert note.due_at is None
    assert [(h.status, h.error) for h in note.history] == [(200, None)]


async def test_failures_are_retried_with_backoff_then_delivered(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.answers = [500, 503]
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    await d.shop.place(order_id="N-2", notify_url=url, wait_seconds=5)
    await endpoint.next_post()
    await d.runtime.notifier.idle()
    note = await notification(d, "N-2")
    assert (note.attempts, note.delivered_at) == (1, None)
    assert 8 <= note.due_at - d.clock.now() <= 12  # initial backoff, with jitter

    assert await d.runtime.notifier.deliver_due() == 0  # not yet due
    d.clock.advance(13)
    assert await d.runtime.notifier.deliver_due() == 1
    await d.runtime.notifier.idle()
    note = await notification(d, "N-2")
    assert note.attempts == 2
    assert 16 <= note.due_at - d.clock.now() <= 24  # doubled

    d.clock.advance(25)
    await d.runtime.notifier.deliver_due()
    await d.runtime.notifier.idle()
    note = await notification(d, "N-2")
    assert note.delivered_at is not None
    assert [h.status for h in note.history] == [500, 503, 200]
    assert len(endpoint.received) == 3


async def test_it_gives_up_after_max_attempts(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.answers = [500] * 10
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    await d.shop.place(order_id="N-3", notify_url=url, wait_seconds=5)
    await endpoint.next_post()
    for _ in range(4):
        await d.runtime.notifier.idle()
        d.clock.advance(120)
        await d.runtime.notifier.deliver_due()
    await d.runtime.notifier.idle()
    note = await notification(d, "N-3")
    assert (note.attempts, note.gave_up, note.due_at) == (3, True, None)
    assert len(endpoint.received) == 3


async def test_a_hanging_shop_endpoint_delays_no_order(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.hang = True
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    results = await asyncio.gather(
        *(d.shop.place(order_id=f"H-{i}", notify_url=url, wait_seconds=5) for i in range(5))
    )
    assert all(order["status"] == "succeeded" for _, order in results)
    await endpoint.next_post()
    _, again = await d.shop.place(order_id="H-9", wait_seconds=5)
    assert again["status"] == "succeeded"


async def test_pending_notifications_survive_a_restart(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str], tmp_path: Path
) -> None:
    endpoint, url = shop_endpoint
    endpoint.answers = [502]
    store = f"sqlite:///{tmp_path}/gateway.db"
    first = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY, store=store)
    await first.shop.place(order_id="N-5", notify_url=url, wait_seconds=5)
    await endpoint.next_post()
    await first.runtime.notifier.idle()
    await first.stop()

    second = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY, store=store)
    second.clock.advance(15)
    assert await second.runtime.notifier.deliver_due() == 1
    await second.runtime.notifier.idle()
    note = await notification(second, "N-5")
    assert note.delivered_at is not None
    assert [h.status for h in note.history] == [502, 200]


def on_host(url: str, host: str) -> str:
    return url.replace("127.0.0.1", host, 1)


def demo_shop(*notify_hosts: str) -> dict[str, Any]:
    return {"demo": {"secret": SECRET, "products": ["mobile.*"], "notify_hosts": list(notify_hosts)}}


async def test_a_listed_name_resolving_to_loopback_is_refused_and_retried_like_a_failure(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY, shops=demo_shop("localhost"))
    status, order = await d.shop.place(order_id="N-DNS", notify_url=on_host(url, "localhost"), wait_seconds=5)
    assert (status, order["status"]) == (201, "succeeded")
    await asyncio.sleep(0.1)  # give a wrongly allowed POST time to arrive
    await d.runtime.notifier.idle()
    note = await notification(d, "N-DNS")
    [delivery] = note.history
    assert delivery.status is None
    assert delivery.error.startswith("refused: localhost resolves to no address notifications may go to")
    assert "127.0.0.1" in delivery.error
    assert (note.attempts, note.delivered_at) == (1, None)
    assert note.due_at is not None  # retried with backoff like any failed delivery
    assert endpoint.received == []

    for _ in range(3):
        d.clock.advance(120)
        await d.runtime.notifier.deliver_due()
        await d.runtime.notifier.idle()
    note = await notification(d, "N-DNS")
    assert (note.attempts, note.gave_up) == (3, True)
    assert endpoint.received == []


async def test_a_listed_name_reaches_a_private_address_the_shop_also_lists(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY, shops=demo_shop("localhost", "127.0.0.1"))
    await d.shop.place(order_id="N-OK", notify_url=on_host(url, "localhost"), wait_seconds=5)
    posted = await endpoint.next_post()
    assert posted["order_id"] == "N-OK"
    await d.runtime.notifier.idle()
    assert (await notification(d, "N-OK")).delivered_at is not None


async def test_a_host_removed_from_notify_hosts_by_a_reload_is_no_longer_posted_to(
    gateway: Gateway, shop_endpoint: tuple[ShopEndpoint, str]
) -> None:
    endpoint, url = shop_endpoint
    endpoint.answers = [500]
    d = await gateway({"fulu": SupplierSpec()}, notify=NOTIFY)
    await d.shop.place(order_id="N-GONE", notify_url=url, wait_seconds=5)
    await endpoint.next_post()
    await d.runtime.notifier.idle()
    d.runtime.notifier.reconfigure(d.runtime.config.notify, {"demo": SECRET.encode()}, {"demo": ()})
    d.clock.advance(15)
    assert await d.runtime.notifier.deliver_due() == 1
    await d.runtime.notifier.idle()
    note = await notification(d, "N-GONE")
    assert [(h.status, h.error) for h in note.history] == [
        (500, None),
        (None, "refused: host '127.0.0.1' is not in shops.demo.notify_hosts"),
    ]
    assert len(endpoint.received) == 1
