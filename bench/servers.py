"""Processes the benchmark measures against: a simulated fulu supplier and a bare aiohttp pass-through proxy.

Run as `python bench/servers.py simulator|passthrough ...`; each serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
from aiohttp import web

from gateway.config.model import SimulateConfig
from gateway.simulator import build_simulator

CREDENTIALS = {"app_key": "bench-app-key", "app_secret": "bench-app-secret"}


def simulator_app(callback_url: str, result_after: float, drop_callbacks: bool) -> web.Application:
    knobs = SimulateConfig(
        latency=0.0,
        result_after=result_after,
        success_rate=1.0,
        callback_drop_rate=1.0 if drop_callbacks else 0.0,
        seed=1,
    )
    return build_simulator("fulu", credentials=CREDENTIALS, knobs=knobs, callback_url=callback_url).app


def passthrough_app(upstream: str) -> web.Application:
    """The least a proxy does: read the request, send it on with one shared session, copy the reply back."""
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app[session_key] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[session_key].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app[session_key].request(
            request.method,
            upstream + request.path_qs,
            data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as reply:
            payload = await reply.read()
            return web.Response(body=payload, status=reply.status, content_type=reply.content_type)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="kind", required=True)
    sim = sub.add_parser("simulator")
    sim.add_argument("--port", type=int, required=True)
    sim.add_argument("--callback-url", required=True)
    sim.add_argument("--result-after", type=float, default=0.05)
    sim.add_argument("--drop-callbacks", action="store_true")
    proxy = sub.add_parser("passthrough")
    proxy.add_argument("--port", type=int, required=True)
    proxy.add_argument("--upstream", required=True)
    args = parser.parse_args()
    if args.kind == "simulator":
        app = simulator_app(args.callback_url, args.result_after, args.drop_callbacks)
    else:
        app = passthrough_app(args.upstream)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
