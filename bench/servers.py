"""Processes the benchmark measures against: simulated fulu suppliers and a bare aiohttp pass-through proxy.

Run as `python bench/servers.py simulator|passthrough --loop uvloop|asyncio ...`; each serves until
killed. Both run on the event loop bench/run.py names, the gateway's own, so that the proxy, the
floor every ratio is taken against, is not handicapped (or helped) by a different loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import aiohttp
import orjson
from aiohttp import web

from adapters.fulu import compact_json, sign_text
from gateway.config.model import SimulateConfig
from gateway.simulator import build_simulator

CREDENTIALS = {"app_key": "bench-app-key", "app_secret": "bench-app-secret"}
# Thousands of orders may finish at once (`--inflight`): the listen queue must hold their connects,
# or the kernel drops SYNs and the gateway's connects time out for a reason no real supplier has.
BACKLOG = 4096
# Callbacks wait in the simulator's pool of 100 connections; at thousands at once, the default 2 s
# (waiting for a connection included) would drop callbacks the gateway would answer in time.
CALLBACK_TIMEOUT_SECONDS = 60.0


def simulator_app(
    callback_url: str, latency: float, result_after: float, drop_callbacks: bool
) -> web.Application:
    knobs = SimulateConfig(
        latency=latency,
        result_after=result_after,
        success_rate=1.0,
        callback_drop_rate=1.0 if drop_callbacks else 0.0,
        seed=1,
    )
    return build_simulator(
        "fulu",
        credentials=CREDENTIALS,
        knobs=knobs,
        callback_url=callback_url,
        callback_timeout_seconds=CALLBACK_TIMEOUT_SECONDS,
    ).app


def instant_app() -> web.Application:
    """A fulu supplier that answers every submit "success" in its reply and never calls back.

    The cheapest supplier there is: the order is final when the submit returns, so the gateway's
    work per order is one shop request in and one supplier request out, as a proxy's is.
    """
    secret = CREDENTIALS["app_secret"]

    async def submit(request: web.Request) -> web.Response:
        biz = orjson.loads(orjson.loads(await request.read())["biz_content"])
        number = biz["customer_order_no"]
        result = compact_json(
            {"order_id": f"S{number}", "customer_order_no": number, "order_state": "success"}
        )
        body = {"code": 0, "message": "ok", "result": result, "sign": sign_text(result, secret)}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", submit)
    return app


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


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    common.add_argument("--port", type=int, required=True)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="kind", required=True)
    sim = sub.add_parser("simulator", parents=[common])
    sim.add_argument("--callback-url", required=True)
    sim.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    sim.add_argument("--result-after", type=float, default=0.05)
    sim.add_argument("--drop-callbacks", action="store_true")
    sim.add_argument("--instant", action="store_true", help="answer success in the reply, never call back")
    proxy = sub.add_parser("passthrough", parents=[common])
    proxy.add_argument("--upstream", required=True)
    args = parser.parse_args()
    if args.kind == "simulator" and args.instant:
        app = instant_app()
    elif args.kind == "simulator":
        app = simulator_app(args.callback_url, args.latency, args.result_after, args.drop_callbacks)
    else:
        app = passthrough_app(args.upstream)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            app,
            host="127.0.0.1",
            port=args.port,
            access_log=None,
            print=None,
            backlog=BACKLOG,
            loop=new_loop(args.loop),
        )


if __name__ == "__main__":
    main()
