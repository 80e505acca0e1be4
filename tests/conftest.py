"""Test-wide settings: structured logs to stderr at warning level, so stdout stays the program's own.

Where skipping is not allowed (`tests/tools.py`, CI), a skipped test is reported as a failure.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from gateway.config.model import LogConfig, LogFormat, LogLevel
from gateway.logs import configure_logging
from tests.redis_servers import _shared_redis_cluster, redis_cluster, redis_server, redis_url
from tests.tools import SWITCH, strict

# Real Redis for every test that names one of these fixtures (tests/redis_servers.py).
__all__ = ["_shared_redis_cluster", "redis_cluster", "redis_server", "redis_url"]

configure_logging(LogConfig(level=LogLevel.WARNING, format=LogFormat.CONSOLE), cache=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and strict() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and {SWITCH}=1 forbids skipping: {reason}"
    return report
