"""`examples/follow-order.html` in a real headless Chromium (Selenium, Debian's chromium and chromedriver;
nothing downloaded): a shop's browser follows one order live over the WebSocket with a token.

The page is served from its own origin, as a shop's site would be, and talks to a real gateway on
another port. A screenshot of the final page is left in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.e2e.browser import chromium, wait_until
from tests.e2e.harness import Gateway, SupplierSpec
from tests.e2e.test_websocket import token_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PAGE = "follow-order.html"


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """The examples directory served over HTTP on its own port: the shop's site."""
    app = web.Application()
    app.router.add_static("/", EXAMPLES)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WebDriver]:
    async with chromium(tmp_path, monkeypatch) as driver:
        yield driver


def page_url(site: str, gateway: str, token: str) -> str:
    """The page as the shop's server would link it: the gateway's address and the token in its query."""
    return f"{site}/{PAGE}?{urlencode({'gateway': gateway, 'token': token})}"


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def connection(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "connection").get_attribute("data-state"))


async def test_a_shops_page_follows_an_order_live_until_it_succeeded(
    gateway: Gateway, site: str, browser: WebDriver, tmp_path: Path
) -> None:
    d = await gateway({"fulu": SupplierSpec(knobs={"result_after": 0.3})})
    # The shop's server mints the token (signed) and renders the page with it: the browser never
    # holds the shop's secret.
    token = await token_for(d.shop, order_id="PAGE-1", ttl_seconds=300)
    await asyncio.to_thread(browser.get, page_url(site, d.base_url, token))
    await wait_until(browser, lambda b: connection(b) == "connected", "a live connection")
    assert "token=" not in browser.current_url  # taken off the address bar once read

    status, _ = await d.shop.place(order_id="PAGE-1", wait_seconds=0)
    assert status == 201
    await wait_until(browser, lambda b: text(b, "status") == "succeeded", "the order succeeded")
    await asyncio.to_thread(browser.save_screenshot, str(tmp_path / "follow-order.png"))
    assert text(browser, "order-id") == "PAGE-1"
    assert connection(browser) == "final"
    progress = text(browser, "log").splitlines()
    assert "processing" in progress[0]  # followed live, not just found finished
    assert "succeeded" in progress[-1]

    # A customer opening the page after the order finished sees where it ended.
    token = await token_for(d.shop, order_id="PAGE-1")
    await asyncio.to_thread(
        browser.get, f"{site}/{PAGE}?{urlencode({'gateway': d.base_url, 'token': token})}"
    )
    await wait_until(browser, lambda b: text(b, "status") == "succeeded", "the finished order")
    assert (tmp_path / "follow-order.png").stat().st_size > 0
