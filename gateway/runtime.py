"""The running gateway's collaborators, built once by the composition root and shared by the handlers."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.auth import ShopAuthenticator
from gateway.catalog import Catalog
from gateway.clock import Clock
from gateway.config.model import GatewayConfig
from gateway.events import EventHub
from gateway.metrics import Metrics
from gateway.notifier import Notifier
from gateway.orders import OrderService
from gateway.ratelimit import RateState
from gateway.reconciler import Reconciler
from gateway.routing import Router
from gateway.store import Store
from gateway.suppliers import Supplier
from gateway.switches import Switchboard
from gateway.upstream import Upstream


@dataclass(slots=True, kw_only=True)
class Runtime:
    config: GatewayConfig  # replaced as a whole by a reload
    config_path: Path | None  # the file a reload re-reads; None when built from a config object
    clock: Clock
    rng: random.Random
    metrics: Metrics
    catalog: Catalog
    store: Store
    suppliers: dict[str, Supplier]  # updated in place by a reload: every part shares this one mapping
    rate_state: RateState
    router: Router
    upstream: Upstream
    orders: OrderService
    reconciler: Reconciler
    notifier: Notifier
    auth: ShopAuthenticator
    events: EventHub
    switches: Switchboard  # operator switches: on Redis, shared by every instance on it
    # One reload at a time: a reload checks the store, then applies, and must not interleave with another.
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Which instance this is, among those sharing a store: host name, process id, and a few random
    # characters for two gateways built in one process (as the tests do).
    instance_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )


RUNTIME: Final = web.AppKey("runtime", Runtime)
