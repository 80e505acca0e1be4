"""Fixtures for end-to-end tests: deployments that clean up after themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest

from tests.e2e.harness import Gateway, deploy


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    cleanups: list[Callable[[], Awaitable[None]]] = []
    yield partial(deploy, cleanups)
    for cleanup in reversed(cleanups):
        await cleanup()
