"""The operator console (CONTRACT.md §10) on the admin listener.

In a real headless Chromium (tests/e2e/browser.py) against a running gateway with simulated suppliers:
signing in, the suppliers and switching one off, an order needing a person whose supplier message is
markup (shown as text, never run), and resolving it from the page. A screenshot of each is left in
the test's tmp dir. Then, without a browser: which paths need the token and the headers the page
is served with.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from aiohttp import ClientSession
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from gateway import console
from gateway.app import create_admin_app
from gateway.order import OrderStatus, Reason
from gateway.store import StaleOrder
from gateway.switches import SwitchKind
from tests.e2e.browser import chromium, wait_until
from tests.e2e.harness import SHOP, Deployment, Gateway, SupplierSpec
from tests.e2e.test_admin_orders import HUNG, UNSETTLED
from tests.e2e.test_operations import admin_url

TOKEN: Final = "admin-token"
OPERATOR: Final = "alice"
# What a supplier might answer: were it ever parsed as markup, it would run and leave a trace.
MARKUP: Final = (
    '<img src=x onerror="document.body.dataset.pwned=1;alert(1)">'
    "<script>document.body.dataset.pwned=2;alert(2)</script>"
)


@pytest.fixture
async def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WebDriver]:
    async with chromium(tmp_path, monkeypatch) as driver:
        yield driver


async def call(function: Callable[..., Any], *args: Any) -> Any:
    """One Selenium call, in a thread: the gateway answering the page runs on this loop."""
    return await asyncio.to_thread(function, *args)


def displayed(element_id: str) -> Callable[[WebDriver], bool]:
    return lambda b: bool(b.find_element(By.ID, element_id).is_displayed())


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def supplier_names(driver: WebDriver) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#suppliers tr[data-supplier]")
    return [str(row.get_attribute("data-supplier")) for row in rows]


def supplier_state(driver: WebDriver, name: str) -> str:
    return text(driver, f'#suppliers tr[data-supplier="{name}"] td.state')


def order_card(where: str, order_id: str) -> str:
    return f'#{where} article[data-order-id="{order_id}"]'


def fill(driver: WebDriver, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def sign_in(driver: WebDriver, token: str) -> None:
    fill(driver, "operator", OPERATOR)
    fill(driver, "token", token)
    driver.find_element(By.ID, "sign-in").click()


async def confirm(driver: WebDriver, **fields: str) -> None:
    """Answer the confirmation the last click opened: its fields, then Confirm."""
    await wait_until(driver, displayed("confirm"), "the confirmation")

    def answer() -> None:
        for name, value in fields.items():
            element = driver.find_element(By.ID, f"confirm-{name}")
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.send_keys(value)
        driver.find_element(By.ID, "confirm-ok").click()

    await call(answer)


async def click(driver: WebDriver, css: str) -> None:
    """Click the element once it is there (the page re-renders lists as it refreshes them)."""

    def clicked(b: WebDriver) -> bool:
        b.find_element(By.CSS_SELECTOR, css).click()
        return True

    await wait_until(driver, clicked, f"{css} to click")


async def open_console(driver: WebDriver, d: Deployment) -> None:
    await call(driver.get, admin_url(d) + "/admin/")
    await wait_until(driver, displayed("login"), "the sign-in form")
    await call(sign_in, driver, TOKEN)
    await wait_until(driver, displayed("console"), "the console")


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 (the property raises when no dialog is open)
    except NoAlertPresentException:
        return True
    return False


async def api_error(d: Deployment, path: str) -> str:
    """The error message the admin API answers a POST with, as the page must show it."""
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Operator": OPERATOR, "Content-Type": "application/json"}
    async with (
        ClientSession() as session,
        session.post(admin_url(d) + path, data=b"{}", headers=headers) as reply,
    ):
        assert reply.status >= 400, await reply.text()
        return str(orjson.loads(await reply.read())["error"]["message"])


# -- in the browser ---------------------------------------------------------------------------


async def test_the_console_asks_for_the_token_lists_suppliers_and_disabling_one_moves_traffic(
    gateway: Gateway, browser: WebDriver, tmp_path: Path
) -> None:
    d = await gateway({"fulu": SupplierSpec(), "backup": SupplierSpec()})
    await call(browser.get, admin_url(d) + "/admin/")
    await wait_until(browser, displayed("login"), "the sign-in form")
    await call(sign_in, browser, "not-the-token")
    await wait_until(browser, lambda b: "refused" in text(b, "#login-problem"), "the token refused")
    assert await call(browser.execute_script, "return sessionStorage.getItem('gateway.admin.token')") is None

    await call(sign_in, browser, TOKEN)
    await wait_until(
        browser,
        lambda b: (
            [
                r.get_attribute("data-supplier")
                for r in b.find_elements(By.CSS_SELECTOR, "#suppliers tr[data-supplier]")
            ]
            == ["fulu", "backup"]
        ),
        "the demo suppliers",
    )
    assert TOKEN not in browser.current_url
    assert supplier_state(browser, "fulu") == "closed"

    # Cancelled: nothing happens.
    await click(browser, '#suppliers tr[data-supplier="fulu"] button.switch')
    await wait_until(browser, displayed("confirm"), "the confirmation")
    await click(browser, "#confirm-cancel")
    await asyncio.sleep(0.2)
    assert not d.runtime.suppliers["fulu"].disabled

    await click(browser, '#suppliers tr[data-supplier="fulu"] button.switch')
    await confirm(browser)
    await wait_until(browser, lambda b: supplier_state(b, "fulu") == "disabled", "fulu disabled")
    assert d.runtime.suppliers["fulu"].disabled
    status, order = await d.shop.place(order_id="AFTER-DISABLE", wait_seconds=5)
    assert (status, order["status"], order["supplier"]) == (201, "succeeded", "backup")

    # The page reloaded keeps the session's token: no second prompt.
    await call(browser.refresh)
    await wait_until(browser, displayed("console"), "the console again")
    await wait_until(browser, lambda b: supplier_state(b, "fulu") == "disabled", "fulu still disabled")
    await wait_until(browser, lambda b: "backup" in text(b, "#stats tbody"), "today's figures")
    await call(browser.save_screenshot, str(tmp_path / "console-suppliers.png"))
    assert (tmp_path / "console-suppliers.png").stat().st_size > 0


async def manual_review_with_markup(gateway: Gateway, order_id: str) -> Deployment:
    """An order in manual_review whose attempt carries a supplier message written as markup."""
    d = await gateway({"hung": HUNG}, orders=UNSETTLED)
    _, placed = await d.shop.place(order_id=order_id, wait_seconds=1)
    assert placed["reason"] == "outcome_unknown"
    d.clock.advance(3601)
    assert (await d.runtime.reconciler.sweep()).manual_review == 1
    for _ in range(20):  # the reconciler may save the order meanwhile: read it again
        stored = await d.runtime.store.get_order(SHOP, order_id)
        assert stored is not None
        attempts = tuple(replace(a, message=MARKUP, detail=MARKUP) for a in stored.attempts)
        try:
            await d.runtime.store.save_order(replace(stored, attempts=attempts))
        except StaleOrder:
            continue
        return d
    raise AssertionError("the order kept changing")


async def test_markup_from_a_supplier_shows_as_text_and_the_order_is_resolved_from_the_page(
    gateway: Gateway, browser: WebDriver, tmp_path: Path
) -> None:
    d = await manual_review_with_markup(gateway, "XSS-1")
    await open_console(browser, d)
    card = order_card("attention", "XSS-1")
    await wait_until(browser, lambda b: MARKUP in text(b, card), "the supplier's message as text")
    assert await call(no_alert, browser)
    assert await call(browser.find_elements, By.CSS_SELECTOR, "main img, main script") == []
    assert await call(browser.execute_script, "return document.body.dataset.pwned === undefined")

    # Search finds it too.
    await call(fill, browser, "search-shop", SHOP)
    await call(fill, browser, "search-order", "XSS-1")
    await click(browser, '#search button[type="submit"]')
    await wait_until(browser, lambda b: MARKUP in text(b, order_card("found", "XSS-1")), "the order found")

    # Re-notify and resubmit call their routes; what the API refuses, the page says.
    for action in ("notify", "resubmit"):
        await click(browser, f"{card} button.{action}")
        await confirm(browser)
        message = await api_error(d, f"/admin/orders/{SHOP}/XSS-1/{action}")
        await wait_until(browser, lambda b, m=message: m in text(b, "#notice"), f"the {action} refusal")  # type: ignore[misc]
        assert "error" in (await call(browser.find_element, By.ID, "notice")).get_attribute("class")

    await click(browser, f"{card} button.resolve")
    await confirm(browser, status="failed", note="refunded: the supplier never charged it")
    await wait_until(browser, lambda b: "done" in text(b, "#notice"), "the resolution done")
    await wait_until(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, card), "the order off the list")
    await wait_until(
        browser, lambda b: "resolved_by_operator" in text(b, order_card("found", "XSS-1")), "resolved"
    )
    stored = await d.runtime.store.get_order(SHOP, "XSS-1")
    assert stored is not None
    assert (stored.status, stored.reason) == (OrderStatus.FAILED, Reason.RESOLVED_BY_OPERATOR)
    assert stored.incidents[-1].detail == f"{OPERATOR}: refunded: the supplier never charged it"
    assert await call(no_alert, browser)
    await call(browser.save_screenshot, str(tmp_path / "console-orders.png"))
    assert (tmp_path / "console-orders.png").stat().st_size > 0


async def test_a_held_order_is_resubmitted_from_the_page_and_succeeds(
    gateway: Gateway, browser: WebDriver, tmp_path: Path
) -> None:
    d = await gateway(
        {"bad": SupplierSpec(knobs={"success_rate": 0.0}), "good": SupplierSpec()},
        orders={"when_exhausted": "hold"},
    )
    await d.runtime.switches.flip(SwitchKind.DISABLED, "good", True, by=None)
    _, placed = await d.shop.place(order_id="HELD-1", wait_seconds=5)
    assert (placed["status"], placed["reason"]) == ("processing", "held"), placed
    await d.runtime.switches.flip(SwitchKind.DISABLED, "good", False, by=None)

    await open_console(browser, d)
    card = order_card("attention", "HELD-1")
    await wait_until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, card), "the held order")
    await click(browser, f"{card} button.resubmit")
    await confirm(browser, supplier="good", note="channel back")
    await wait_until(browser, lambda b: "done" in text(b, "#notice"), "the resubmission done")
    order = await d.shop.wait_for("HELD-1", lambda o: o["status"] == "succeeded")
    assert order["supplier"] == "good"
    await wait_until(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, card), "the order off the list")
    await call(browser.save_screenshot, str(tmp_path / "console-resubmitted.png"))


# -- over HTTP --------------------------------------------------------------------------------


async def test_the_page_and_its_files_need_no_token_and_carry_the_policy(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    async with ClientSession() as session:
        for path, content_type in (
            ("/admin/", "text/html"),
            ("/admin/static/console.js", "text/javascript"),
            ("/admin/static/console.css", "text/css"),
        ):
            async with session.get(admin_url(d) + path) as reply:
                assert (reply.status, reply.content_type) == (200, content_type), path
                policy = reply.headers["Content-Security-Policy"]
                assert "script-src 'self'" in policy
                assert "frame-ancestors 'none'" in policy
                assert "unsafe-inline" not in policy
                assert reply.headers["X-Frame-Options"] == "DENY"
                assert reply.headers["X-Content-Type-Options"] == "nosniff"
                body = await reply.text()
            if path == "/admin/":
                page = body
        # No inline script: every script element loads a file from the console.
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.DOTALL)
        assert scripts == [(' src="/admin/static/console.js" defer', "")]
        assert not re.search(r"<[^>]+\son\w+=", page)  # nor event attributes

        for path in ("/admin/static/nope.js", "/admin/static/index.html", "/admin/static/..%2Fadmin.py"):
            async with session.get(admin_url(d) + path) as reply:
                assert reply.status == 404, path


async def test_every_admin_api_route_still_needs_the_token(gateway: Gateway) -> None:
    d = await gateway({"fulu": SupplierSpec()})
    app = create_admin_app(d.runtime)
    checked: list[tuple[str, str]] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter"))
        if (
            route.method == "HEAD"
            or route.handler in console.PUBLIC_HANDLERS
            or not path.startswith("/admin/")
        ):
            continue
        checked.append((route.method, re.sub(r"\{[^}]+\}", "x", path)))
    assert ("GET", "/admin/suppliers") in checked
    assert ("POST", "/admin/orders/x/x/resolve") in checked
    # A method the console does not serve, and paths beside its own, need the token as well.
    checked += [("POST", "/admin/"), ("DELETE", "/admin/static/console.js"), ("GET", "/admin/static/")]
    async with ClientSession() as session:
        for method, path in checked:
            for headers in ({}, {"Authorization": "Bearer not-the-token"}):
                async with session.request(method, admin_url(d) + path, headers=headers) as reply:
                    assert reply.status == 401, (method, path, headers, await reply.text())
