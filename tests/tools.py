"""Outside tools the tests need (redis-server, promtool, prometheus, chromium): skipped here, required in CI.

One switch decides: `GATEWAY_REQUIRE_TOOLS=1` (set by `.ci/run`; `GATEWAY_REQUIRE_REDIS=1` is read
as the same switch). With it a missing tool fails its test, and any skip at all fails the run
(`tests/conftest.py`): a CI run that did not run everything is never green.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

import pytest

SWITCH = "GATEWAY_REQUIRE_TOOLS"
ALIASES = ("GATEWAY_REQUIRE_TOOLS", "GATEWAY_REQUIRE_REDIS")


def strict(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run must not skip anything (CI)."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "") not in ("", "0") for name in ALIASES)


def need(*commands: str, environ: Mapping[str, str] | None = None) -> None:
    """Skip the calling test where a command is missing, or fail it where skipping is not allowed."""
    missing = [command for command in commands if shutil.which(command) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} on PATH (.ci/run installs it)"
    if strict(environ):
        pytest.fail(f"{message}; {SWITCH}=1 forbids skipping it", pytrace=False)
    pytest.skip(message)
