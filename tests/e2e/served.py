"""A gateway served the way `gateway run` serves it, for tests where aiohttp's test server would differ.

aiohttp's `TestServer` cancels a handler when its client hangs up (`handler_cancellation=True`);
`gateway run` uses a plain `AppRunner`, where a handler learns of the hang-up only by itself. Tests of
what a hang-up frees, or of how a connection ends, must run on the latter to prove anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web

from gateway.app import create_app
from gateway.config.loader import parse_config
from tests.e2e.harness import Shop, SupplierSpec, config_yaml

NOWHERE = SupplierSpec(url="http://127.0.0.1:1")  # for tests whose requests never reach a supplier
OFFERS = [{"supplier": "fulu", "sku": "18221081", "cost": "49.30"}]


@asynccontextmanager
async def served(
    settings: Mapping[web.AppKey[Any], Any] | None = None, **options: Any
) -> AsyncIterator[Shop]:
    """The gateway of `config_yaml(**options)` on a free loopback port, and the demo shop signing for it.

    `settings` go on the application before it starts. No suppliers are simulated: the supplier points
    nowhere.
    """
    text = config_yaml(0, {"fulu": NOWHERE}, OFFERS, **options)
    app = create_app(parse_config(text, {}), start_simulators=False, start_admin=False)
    for key, value in (settings or {}).items():
        app[key] = value
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with ClientSession() as session:
            yield Shop(session, f"http://{host}:{port}")
    finally:
        await runner.cleanup()
