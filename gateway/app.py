"""The composition root: `create_app(config)` builds every stateful piece and pairs start-up with clean-up.

Nothing else in the gateway constructs collaborators; tests pass a clock, a random source or a store URL.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway import admin, api, callbacks, console, openapi, stream, websocket
from gateway.auth import ShopAuthenticator
from gateway.balancewatch import BalanceWatch
from gateway.cancellation import cancel_and_wait
from gateway.catalog import Catalog
from gateway.changes import OrderChanges
from gateway.clock import Clock, SystemClock
from gateway.config.model import GatewayConfig
from gateway.destinations import NotificationSessions
from gateway.events import EventBus, EventHub
from gateway.guards import ACCOUNT_GUARD, AccountGuard
from gateway.logs import get_logger
from gateway.metrics import Metrics, RouteMetrics
from gateway.middleware import REFUSALS, ROUTE_METRICS, UNMATCHED, error_middleware, metrics_middleware
from gateway.notifier import Notifier
from gateway.openapi import admin as admin_openapi
from gateway.openapi import shop as shop_openapi
from gateway.orders import OrderService
from gateway.ratelimit import MemoryRateState, RateState
from gateway.reconciler import Reconciler
from gateway.redisevents import RedisFeed
from gateway.redisrate import RedisRateState
from gateway.redisswitches import RedisSwitches
from gateway.routing import Router
from gateway.runtime import RUNTIME, Runtime
from gateway.schedule import CheckSchedule
from gateway.shoprate import ShopRates
from gateway.simulation import SimulatorFarm
from gateway.store import Store, StoreError, open_store
from gateway.store.redis import RedisStore
from gateway.suppliers import Supplier, build_suppliers
from gateway.switches import ProcessSwitches, SupplierDisabled, Switchboard, SwitchKind, SwitchState
from gateway.upstream import SupplierSessions, Upstream

log = get_logger(__name__)
ADMIN_RUNNER: Final = web.AppKey("admin_runner", web.AppRunner)
SIMULATORS: Final = web.AppKey("simulators", SimulatorFarm)
STORE_WATCH_SECONDS: Final = 5.0

Context = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    config: GatewayConfig,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    start_simulators: bool = True,
    start_admin: bool = True,
    config_path: Path | None = None,
) -> web.Application:
    """The shop listener's application; the admin listener and simulators start with it."""
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=config.server.max_body_bytes,
    )
    # Before api.routes, so /v1/orders/{order_id} never shadows /v1/orders/events or /v1/orders/ws whatever
    # the matching order.
    app.add_routes(stream.routes)
    app.add_routes(websocket.routes)
    app.add_routes(api.routes)
    app.add_routes(callbacks.routes)
    openapi.publish(app, shop_openapi.PATH, shop_openapi.encoded())
    metrics = Metrics()
    _bind_route_metrics(app, metrics)
    app[REFUSALS] = metrics
    contexts: list[Context] = []
    if start_simulators:
        contexts.append(_simulators_context(config))
    contexts.append(
        _runtime_context(config, config_path, metrics, clock or SystemClock(), rng or random.Random())
    )
    if start_admin:
        contexts.append(_admin_context(config))
    app.cleanup_ctx.extend(contexts)
    app.on_shutdown.append(stream.end_streams)
    return app


def create_admin_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[error_middleware, admin.admin_token_middleware])
    app[RUNTIME] = runtime
    app.add_routes(admin.routes)
    app.add_routes(console.routes)
    openapi.publish(app, admin_openapi.PATH, admin_openapi.encoded())
    return app


def _bind_route_metrics(app: web.Application, metrics: Metrics) -> None:
    bound: dict[object, RouteMetrics] = {UNMATCHED: metrics.route(UNMATCHED)}
    for resource in app.router.resources():
        bound[resource] = metrics.route(resource.canonical)
    app[ROUTE_METRICS] = bound


def _simulators_context(config: GatewayConfig) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        farm = SimulatorFarm(config)
        await farm.start()
        app[SIMULATORS] = farm
        try:
            yield
        finally:
            await farm.stop()

    return ctx


def _runtime_context(
    config: GatewayConfig, config_path: Path | None, metrics: Metrics, clock: Clock, rng: random.Random
) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(config.store)
        sessions = SupplierSessions()
        # Apart from the supplier session: notifications connect only where shops may be reached.
        notify_sessions = NotificationSessions()
        try:
            catalog = Catalog(config)
            rate_state = await _rate_state(store)
            suppliers = build_suppliers(config, metrics, clock=clock, rng=rng, rate_state=rate_state)
            switches = await _switchboard(store, suppliers, clock)
            router = Router(suppliers, rng, clock)
            upstream = Upstream(sessions)
            schedule = CheckSchedule(config.orders)
            changes = OrderChanges(store, schedule, exclusive=not isinstance(store, RedisStore))
            events = _event_hub(store, clock, rng)
            orders = OrderService(
                config=config.orders,
                catalog=catalog,
                store=store,
                changes=changes,
                suppliers=suppliers,
                router=router,
                upstream=upstream,
                metrics=metrics,
                finals=events,
                clock=clock,
                rng=rng,
            )
            reconciler = Reconciler(
                config=config.orders,
                store=store,
                suppliers=suppliers,
                upstream=upstream,
                orders=orders,
                changes=changes,
                schedule=schedule,
                clock=clock,
                rng=rng,
            )
            secrets = {name: shop.secret.reveal().encode() for name, shop in config.shops.items()}
            notifier = Notifier(
                config=config.notify,
                secrets=secrets,
                notify_hosts={name: shop.notify_hosts for name, shop in config.shops.items()},
                store=store,
                changes=changes,
                sessions=notify_sessions,
                metrics=metrics,
                clock=clock,
                rng=rng,
            )
            limits = {name: shop.rate_limit for name, shop in config.shops.items()}
            shop_rates = ShopRates(limits, rate_state, clock)
            auth = ShopAuthenticator(secrets, store, clock, rates=shop_rates)
            orders.on_change(events.order_changed)
            # The shops as configured now (a reload replaces runtime.config), read only once orders come,
            # after the runtime below is in place.
            guard = AccountGuard(store, clock, lambda: app[RUNTIME].config.shops)
            orders.on_change(guard.order_changed)
            app[ACCOUNT_GUARD] = guard
            orders.on_confirm(reconciler.confirm)
            app[RUNTIME] = Runtime(
                config=config,
                config_path=config_path,
                rate_state=rate_state,
                clock=clock,
                rng=rng,
                metrics=metrics,
                catalog=catalog,
                store=store,
                suppliers=suppliers,
                router=router,
                upstream=upstream,
                orders=orders,
                reconciler=reconciler,
                notifier=notifier,
                auth=auth,
                events=events,
                switches=switches,
            )
            resumed = await orders.recover(exclusive=not isinstance(store, RedisStore))
            log.info(
                "gateway_started", suppliers=len(suppliers), products=len(catalog.products), resumed=resumed
            )
            await events.start()
            background = [
                asyncio.create_task(
                    BalanceWatch(suppliers, upstream, metrics, clock).run(), name="balance-watch"
                ),
                asyncio.create_task(reconciler.run(), name="reconciler"),
                asyncio.create_task(notifier.run(), name="notifier"),
                asyncio.create_task(_watch_store(store, metrics), name="store-watch"),
                asyncio.create_task(switches.watch(), name="switch-watch"),
            ]
            yield
            await cancel_and_wait(background)
            await orders.close()
            await guard.close()
            await reconciler.close()
            await notifier.close()
            await events.stop()
        finally:
            await notify_sessions.close()
            await sessions.close()
            await store.close()

    return ctx


async def _watch_store(store: Store, metrics: Metrics) -> None:
    """`gateway_store_up`, kept current whether or not anything probes readiness."""
    while True:
        try:
            await store.ping()
        except StoreError:
            metrics.store_up.set(0)
        else:
            metrics.store_up.set(1)
        await asyncio.sleep(STORE_WATCH_SECONDS)


async def _switchboard(store: Store, suppliers: dict[str, Supplier], clock: Clock) -> Switchboard:
    """Operator switches: in Redis when orders are, so a switch made on one instance holds for all.

    The stored ones are applied before the gateway serves; a Redis that cannot be read fails the start.
    """
    state: SwitchState = ProcessSwitches()
    if isinstance(store, RedisStore):
        state = RedisSwitches(store.client, permits=store.permits)
    switches = Switchboard(state, {SwitchKind.DISABLED: SupplierDisabled(suppliers)}, clock)
    await switches.load()
    return switches


async def _rate_state(store: Store) -> RateState:
    """Where suppliers' rate limits are kept: in Redis when orders are, so every instance shares them."""
    if isinstance(store, RedisStore):
        shared = RedisRateState(store.client, permits=store.permits)
        await shared.load()
        return shared
    return MemoryRateState()


def _event_hub(store: Store, clock: Clock, rng: random.Random) -> EventHub:
    """Where order events are kept: in Redis Streams when orders are, so every instance sees every change."""
    if isinstance(store, RedisStore):
        return EventHub(RedisFeed(store.client, permits=store.permits, clock=clock, rng=rng))
    return EventBus(clock)


def _admin_context(config: GatewayConfig) -> Context:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(create_admin_app(app[RUNTIME]), access_log=None)
        await runner.setup()
        host, _, port = config.admin.listen.rpartition(":")
        site = web.TCPSite(runner, host.strip("[]"), int(port))
        await site.start()
        app[ADMIN_RUNNER] = runner
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx


def admin_address(app: web.Application) -> tuple[str, int]:
    """Where the admin listener actually bound (port 0 in the config picks a free one)."""
    addresses = app[ADMIN_RUNNER].addresses
    host, port = addresses[0][:2]
    return str(host), int(port)
