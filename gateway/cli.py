"""The `gateway` command: `run`, `check-config`, and `order` (sign and send one order, to try things out)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from gateway.auth import request_signature
from gateway.collector import settle_after_start
from gateway.config.loader import ConfigError, load_config
from gateway.config.model import GatewayConfig
from gateway.eventloop import ENVIRONMENT_VARIABLE, EventLoop, chosen_loop, loop_factory
from gateway.logs import configure_logging, get_logger
from gateway.store import redact_url

DEFAULT_CONFIG = os.environ.get("GATEWAY_CONFIG", "gateway.yaml")


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config(Path(path), os.environ)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem.path}: {problem.message}", file=sys.stderr)
        return None


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(config: GatewayConfig, config_path: Path) -> None:
    from gateway.app import create_app
    from gateway.reconfiguration import reload_from_file
    from gateway.runtime import RUNTIME

    log = get_logger("gateway.cli")
    # Before anything starts: a SIGTERM during start-up (a long recovery, say) then still stops
    # the gateway cleanly instead of killing it mid-write.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(config, config_path=config_path)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            await reload_from_file(app[RUNTIME])
        except ConfigError as exc:
            log.error("config_reload_refused", problems=[str(p) for p in exc.problems])

    def on_sighup() -> None:
        task = asyncio.ensure_future(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        await runner.setup()
        host, port = _split_listen(config.server.listen)
        await web.TCPSite(runner, host, port).start()
        settle_after_start()
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        log.info(
            "gateway_listening",
            listen=config.server.listen,
            admin=config.admin.listen,
            store=redact_url(config.store),
            event_loop=type(loop).__module__.partition(".")[0],  # uvloop or asyncio
        )
        await stop.wait()
    finally:
        # Also after a failed start (a port in use): what did start is closed in order.
        log.info("gateway_stopping")
        await runner.cleanup()


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    try:
        factory = loop_factory(chosen_loop(args.event_loop, os.environ))
    except (ValueError, ImportError) as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(config, Path(args.config)))
    except OSError as exc:  # a listener's port taken, a store path not writable, ...
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    simulated = sum(1 for s in config.suppliers.values() if s.simulate is not None)
    print(
        f"{args.config}: OK: {len(config.shops)} shop(s), {len(config.suppliers)} supplier(s)"
        f" ({simulated} simulated), {len(config.products)} product(s), store {redact_url(config.store)}"
    )
    return 0


async def _send_order(config: GatewayConfig, args: argparse.Namespace) -> int:
    shop = config.shops.get(args.shop)
    if shop is None:
        print(f"no shop {args.shop!r} in the configuration", file=sys.stderr)
        return 1
    base = (args.url or config.server.public_url).rstrip("/")
    if args.status:
        method, path, body = "GET", f"/v1/orders/{args.status}", b""
    else:
        if not args.product or not args.account:
            print("give PRODUCT and ACCOUNT, or --status ORDER_ID", file=sys.stderr)
            return 2
        payload: dict[str, object] = {
            "order_id": args.order_id or f"CLI-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}",
            "product": args.product,
            "account": args.account,
            "quantity": args.quantity,
            "wait_seconds": args.wait,
        }
        if args.notify_url:
            payload["notify_url"] = args.notify_url
        method, path, body = "POST", "/v1/orders", orjson.dumps(payload)
    timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
    headers = {
        "Content-Type": "application/json",
        "X-Shop-Id": args.shop,
        "X-Timestamp": timestamp,
        "X-Nonce": nonce,
        "X-Signature": request_signature(shop.secret.reveal().encode(), method, path, timestamp, nonce, body),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base + path, data=body or None, headers=headers) as response,
    ):
        text = await response.read()
        print(f"HTTP {response.status}", file=sys.stderr)
        try:
            print(orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode())
        except orjson.JSONDecodeError:
            print(text.decode(errors="replace"))
        return 0 if response.status < 400 else 1


def cmd_order(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    return asyncio.run(_send_order(config, args))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gateway", description="Supplier gateway for card shops")
    sub = root.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c", "--config", default=DEFAULT_CONFIG, help="path to gateway.yaml (default: %(default)s)"
        )
        return p

    run = with_config(sub.add_parser("run", help="run the gateway"))
    run.add_argument(
        "--event-loop",
        choices=[e.value for e in EventLoop],
        help=f"the event loop (default: ${ENVIRONMENT_VARIABLE}, else uvloop)",
    )
    run.set_defaults(func=cmd_run)
    with_config(
        sub.add_parser("check-config", help="validate gateway.yaml and list every problem")
    ).set_defaults(func=cmd_check_config)
    order = with_config(sub.add_parser("order", help="sign and send one order as a shop (or read one back)"))
    order.add_argument("product", nargs="?", help="product name, e.g. mobile.cmcc.50")
    order.add_argument("account", nargs="?", help="account to recharge, e.g. 13800138000")
    order.add_argument("--shop", default="demo")
    order.add_argument("--order-id")
    order.add_argument("--quantity", type=int, default=1)
    order.add_argument("--wait", type=float, default=5.0, help="wait_seconds (0 to 10)")
    order.add_argument("--notify-url")
    order.add_argument("--status", metavar="ORDER_ID", help="read back an order instead of placing one")
    order.add_argument("--url", help="gateway base URL (default: server.public_url)")
    order.set_defaults(func=cmd_order)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
