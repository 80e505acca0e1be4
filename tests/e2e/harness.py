"""A test harness for the whole gateway on real sockets: simulated suppliers, the gateway, a signing shop."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson
import yaml
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer, get_port_socket

from gateway.app import create_app
from gateway.auth import notification_signature, request_signature
from gateway.clock import Clock, ShiftedClock
from gateway.config.loader import parse_config
from gateway.config.model import GatewayConfig, SimulateConfig
from gateway.runtime import RUNTIME, Runtime
from gateway.simulator import Simulator, build_simulator

SHOP = "demo"
SECRET = "demo-secret"
FULU_CREDENTIALS = {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}


@dataclass
class SupplierSpec:
    """A supplier for the test config: simulated (knobs) or pointing at an address (url)."""

    knobs: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    timeout: str = "2s"
    protocol: str = "fulu"
    credentials: dict[str, str] = field(default_factory=lambda: dict(FULU_CREDENTIALS))
    extra: dict[str, Any] = field(default_factory=dict)


def config_yaml(
    port: int,
    suppliers: Mapping[str, SupplierSpec],
    offers: list[dict[str, Any]],
    *,
    store: str = "memory://",
    account: str = "mobile_cn",
    routing: str = "priority",
    orders: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    notify: Mapping[str, Any] | None = None,
    admin_token: str = "admin-token",  # noqa: S107 (a test credential)
    shops: Mapping[str, Mapping[str, Any]] | None = None,
    product: Mapping[str, Any] | None = None,
    products: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    doc: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}", **(server or {})},
        "admin": {"listen": "127.0.0.1:0", "token": admin_token},
        "store": store,
        "orders": {"sync_wait": "0s", **(orders or {})},
        "log": {"level": "warning"},
        "notify": dict(notify or {}),
        "shops": {
            SHOP: {"secret": SECRET, "products": ["mobile.*", "game.*"], "notify_hosts": ["127.0.0.1"]},
            **(shops or {}),  # more shops beside the demo one, by id
        },
        "suppliers": {
            name: {
                "protocol": spec.protocol,
                "base_url": spec.url or "http://127.0.0.1:1",
                "credentials": spec.credentials,
                "timeout": spec.timeout,
                "connect_timeout": "500ms",
                **spec.extra,
            }
            for name, spec in suppliers.items()
        },
        "products": {
            "mobile.cmcc.50": {
                "account": account,
                "face_value": "50",
                "routing": routing,
                "offers": offers,
                **(product or {}),  # more keys of mobile.cmcc.50 (carrier, carrier_check)
            },
            **(products or {}),  # more products beside it, by name
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


class Shop:
    """Signs requests as the shop does (CONTRACT.md §1)."""

    def __init__(
        self,
        session: ClientSession,
        base_url: str,
        shop: str = SHOP,
        secret: str = SECRET,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.now = now  # the gateway's clock, so requests stay inside its window when tests move it
        self.session = session
        self.base_url = base_url
        self.shop = shop
        self.secret = secret.encode()

    def headers(self, method: str, path: str, body: bytes, **override: str) -> dict[str, str]:
        timestamp = str(int(self.now()))
        nonce = secrets.token_hex(10)
        hdrs = {
            "Content-Type": "application/json",
            "X-Shop-Id": self.shop,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": request_signature(self.secret, method, path, timestamp, nonce, body),
        }
        hdrs.update(override)
        return hdrs

    async def post_raw(self, body: bytes, **override: str) -> tuple[int, Any, Mapping[str, str]]:
        headers = self.headers("POST", "/v1/orders", body, **override)
        async with self.session.post(self.base_url + "/v1/orders", data=body, headers=headers) as response:
            return response.status, orjson.loads(await response.read()), response.headers

    async def place(self, **fields: Any) -> tuple[int, Any]:
        doc = {
            "order_id": fields.pop("order_id", "T-" + secrets.token_hex(6)),
            "product": "mobile.cmcc.50",
            "account": "13800138000",
            **fields,
        }
        status, body, _ = await self.post_raw(orjson.dumps(doc))
        return status, body

    async def get(self, order_id: str) -> tuple[int, Any]:
        path = f"/v1/orders/{order_id}"
        async with self.session.get(self.base_url + path, headers=self.headers("GET", path, b"")) as response:
            return response.status, orjson.loads(await response.read())

    async def wait_for(self, order_id: str, predicate: Callable[[Any], bool], within: float = 5.0) -> Any:
        """Poll the order until `predicate` holds (bounded: fails the test on timeout)."""
        async with asyncio.timeout(within):
            while True:
                status, order = await self.get(order_id)
                assert status == 200, order
                if predicate(order):
                    return order
                await asyncio.sleep(0.02)


@dataclass
class Deployment:
    """A running gateway plus its simulated suppliers and a shop client."""

    config: GatewayConfig
    app: web.Application
    server: TestServer
    shop: Shop
    simulators: dict[str, Simulator]
    session: ClientSession
    clock: ShiftedClock

    @property
    def runtime(self) -> Runtime:
        return self.app[RUNTIME]

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def stop(self) -> None:
        await self.server.close()


Gateway = Callable[..., Awaitable[Deployment]]
"""The `gateway` fixture: `await gateway(suppliers, offers=None, **config_options)` deploys one."""


async def start_simulator(
    name: str,
    spec: SupplierSpec,
    gateway_port: int,
    cleanups: list[Callable[[], Awaitable[None]]],
    clock: Clock | None = None,
) -> tuple[Simulator, str]:
    """A simulator on its own listener (a crash can stop it), on the gateway's clock when given one:
    windows such as `lag_for` then move with the test's clock jumps, as the gateway's do."""
    knobs = SimulateConfig(**{"latency": 0.0, "result_after": 0.02, "success_rate": 1.0, **spec.knobs})
    simulator = build_simulator(
        spec.protocol,
        credentials=spec.credentials,
        knobs=knobs,
        callback_url=f"http://127.0.0.1:{gateway_port}/callbacks/{name}",
        callback_retry_seconds=0.05,
        clock=clock,
    )
    listener = await simulator.serve("127.0.0.1")
    cleanups.append(listener.close)
    return simulator, listener.url


async def deploy(
    cleanups: list[Callable[[], Awaitable[None]]],
    suppliers: Mapping[str, SupplierSpec],
    offers: list[dict[str, Any]] | None = None,
    *,
    port: int | None = None,
    config_dir: Path | None = None,
    **options: Any,
) -> Deployment:
    """A gateway on the real clock, shifted forward when a test moves it to pass a window."""
    # Bound now and handed to the server later, so no other listener can take the port between
    # choosing it (it goes into the config as public_url) and serving on it.
    listener = get_port_socket("127.0.0.1", port or 0, socket.AF_INET)
    port = listener.getsockname()[1]
    clock = ShiftedClock()
    simulators: dict[str, Simulator] = {}
    specs: dict[str, SupplierSpec] = {}
    for name, spec in suppliers.items():
        if spec.url is None:
            simulator, url = await start_simulator(name, spec, port, cleanups, clock)
            simulators[name] = simulator
            specs[name] = replace(spec, url=url)
        else:
            specs[name] = spec
    if offers is None:
        offers = [
            {"supplier": name, "sku": "18221081", "cost": "49.30", "priority": i + 1}
            for i, name in enumerate(specs)
        ]
    text = config_yaml(port, specs, offers, **options)
    config = parse_config(text, {})
    config_path = None
    if config_dir is not None:  # a file to edit and reload
        config_path = config_dir / "gateway.yaml"
        config_path.write_text(text)
    app = create_app(config, clock=clock, start_simulators=False, config_path=config_path)
    server = TestServer(app, host="127.0.0.1", port=port, socket_factory=lambda *_: listener)
    await server.start_server()
    session = ClientSession()
    shop = Shop(session, str(server.make_url("")).rstrip("/"), now=clock.now)
    deployment = Deployment(config, app, server, shop, simulators, session, clock)

    async def stop() -> None:
        await session.close()
        await server.close()

    cleanups.append(stop)
    return deployment


@dataclass
class ShopEndpoint:
    """The shop's notify_url: verifies each POST and answers as told."""

    answers: list[int] = field(default_factory=list)  # statuses to give, then 200
    hang: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = notification_signature(SECRET.encode(), request.headers["X-Gateway-Timestamp"], body)
        if not hmac.compare_digest(expected, request.headers["X-Gateway-Signature"]):
            self.bad_signatures += 1
        self.received.append(orjson.loads(body))
        self.arrived.set()
        if self.hang:
            await asyncio.sleep(30)
        return web.Response(status=self.answers.pop(0) if self.answers else 200, text="ok")

    async def next_post(self) -> dict[str, Any]:
        async with asyncio.timeout(5):
            await self.arrived.wait()
        self.arrived.clear()
        return self.received[-1]


# A rate limit is kept where requests are admitted; each leaves a moment later, some later than others
# on a loaded machine. Counts at a supplier use windows this much shorter than `per` to take that out.
# 50 ms was not enough with six busy loops on two cores (26 in a window that allows 25). A window of
# 0.8 s still tells a kept limit (20/s + 5 allows 21 in it) from one kept per instance (twice that).
SEND_JITTER_SECONDS: Final = 0.2


async def after_balance_reads(d: Deployment, advance: float = 0.0) -> None:
    """Every supplier's start-up balance read has ended (read or not); then the clock moves `advance`.

    The reads take a rate-limit slot and a concurrency slot of their supplier (CONTRACT.md §9), so a
    test that counts those waits for them, and moves past the slots they took. A supplier polled
    again within `advance` (its `balance.check_every`) would take another: such tests lengthen it.
    """
    for _ in range(500):  # bounded: about five seconds
        if all(s.balance.checked_at is not None or s.balance.stale for s in d.runtime.suppliers.values()):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("a supplier's first balance read never ended")
    d.clock.advance(advance)
