"""The admin listener: health, readiness, Prometheus metrics, and token-guarded `/admin/*` operations."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import Forbidden, NotFound, StoreUnavailable, Unauthenticated
from gateway.middleware import json_response
from gateway.runtime import RUNTIME, Runtime
from gateway.store import StoreError
from gateway.suppliers import Supplier

routes = web.RouteTableDef()


@web.middleware
async def admin_token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/admin/"):
        token = request.app[RUNTIME].config.admin.token.reveal()
        if not token:
            raise Forbidden("no admin token is configured")
        offered = request.headers.get("Authorization", "")
        if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
            raise Unauthenticated("admin token")
    return await handler(request)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[RUNTIME].store.ping()
    except StoreError as exc:
        raise StoreUnavailable(f"store unreachable: {exc}") from None
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[RUNTIME].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _supplier_view(supplier: Supplier) -> dict[str, object]:
    limit = supplier.config.rate_limit
    return {
        "name": supplier.name,
        "protocol": supplier.config.protocol,
        "state": supplier.circuit.label,
        "disabled": supplier.disabled,
        "routable": supplier.routable,
        "success_rate": supplier.success_rate(),
        "latency_p50_seconds": supplier.latency.quantile(0.5),
        "latency_p99_seconds": supplier.latency.quantile(0.99),
        "inflight": supplier.inflight,
        "max_concurrency": supplier.config.max_concurrency,
        "open_for_seconds": round(supplier.breaker.open_remaining(), 3),
        "rate_limit": {
            "rate": limit.rate,
            "per_seconds": limit.per,
            "burst": limit.burst,
            "max_wait_seconds": limit.max_wait,
        },
    }


def _supplier(runtime: Runtime, name: str) -> Supplier:
    supplier = runtime.suppliers.get(name)
    if supplier is None:
        raise NotFound(f"no supplier {name!r}")
    return supplier


@routes.get("/admin/suppliers")
async def list_suppliers(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return json_response({"suppliers": [_supplier_view(s) for s in runtime.suppliers.values()]})


@routes.post("/admin/suppliers/{name}/disable")
async def disable_supplier(request: web.Request) -> web.Response:
    supplier = _supplier(request.app[RUNTIME], request.match_info["name"])
    supplier.set_disabled(True)
    return json_response(_supplier_view(supplier))


@routes.post("/admin/suppliers/{name}/enable")
async def enable_supplier(request: web.Request) -> web.Response:
    supplier = _supplier(request.app[RUNTIME], request.match_info["name"])
    supplier.set_disabled(False)
    return json_response(_supplier_view(supplier))
