"""Headless Chromium for browser tests: Debian's chromium and chromedriver via Selenium, nothing downloaded.

`need("chromium", "chromedriver")` makes a missing browser a skip here and a failure in CI. Selenium
blocks, and the gateway under test runs on the test's event loop: every call goes through a thread.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.tools import need

WITHIN: Final = 15.0  # seconds the browser gets for each step, Chromium's start-up included


@asynccontextmanager
async def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WebDriver]:
    """A headless Chromium with its own profile in the test's tmp dir, quit on leaving."""
    need("chromium", "chromedriver")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should anything call it: no downloads
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(shutil.which("chromedriver")))
    driver = await asyncio.to_thread(webdriver.Chrome, service=service, options=options)
    try:
        yield driver
    finally:
        await asyncio.to_thread(driver.quit)


async def wait_until(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> None:
    """Wait (in a thread: Selenium blocks, and the gateway runs on this loop) until `condition` holds.

    An element the page replaced while `condition` read it counts as "not yet".
    """
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, WITHIN, poll_frequency=0.05, ignored_exceptions=ignored)
    await asyncio.to_thread(wait.until, condition, f"the page never showed {what}")
