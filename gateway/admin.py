"""The admin listener: health, readiness, Prometheus metrics, and token-guarded `/admin/*` operations.

Handlers translate HTTP to the services and back; the order decisions stay in `OrderService`.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import re
from collections.abc import Mapping, Set
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiMapping
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.interface import AccountKind
from gateway import console
from gateway.accounts import account_problem
from gateway.config.loader import ConfigError
from gateway.errors import (
    Forbidden,
    InvalidConfig,
    InvalidRequest,
    NotFound,
    OrderNotFound,
    StoreUnavailable,
    Unauthenticated,
)
from gateway.jsonbody import unknown_fields
from gateway.middleware import json_response
from gateway.money import format_money
from gateway.order import OrderStatus, Reason
from gateway.reconfiguration import reload_from_file
from gateway.runtime import RUNTIME, Runtime
from gateway.stats import Figures, Grouping, china_day, parse_moment
from gateway.store import StoreError, redact_url
from gateway.store.blocks import AccountBlock
from gateway.store.redis import RedisStore
from gateway.suppliers import Supplier
from gateway.switches import SwitchKind
from gateway.views import iso_time, operator_view

routes = web.RouteTableDef()

DEFAULT_LIST_LIMIT: Final = 100
MAX_LIST_LIMIT: Final = 1000
LIST_PARAMETERS: Final = frozenset({"status", "reason", "limit"})
RESOLVE_FIELDS: Final = frozenset({"status", "note"})
RESOLVABLE: Final = (OrderStatus.SUCCEEDED, OrderStatus.FAILED)
MAX_NOTE_CHARS: Final = 1000  # the note becomes the order's message, which the shop is sent
MAX_OPERATOR_CHARS: Final = 64
DEFAULT_OPERATOR: Final = "admin"

Problems = list[dict[str, str]]
Choice = TypeVar("Choice", OrderStatus, Reason)


@web.middleware
async def admin_token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The console's page and static files are the one exception (CONTRACT.md §10): they hold no data.
    if request.path.startswith("/admin/") and not console.is_public(request):
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
    runtime = request.app[RUNTIME]
    try:
        await runtime.store.ping()
    except StoreError as exc:
        runtime.metrics.store_up.set(0)
        raise StoreUnavailable(f"store unreachable: {exc}") from None
    runtime.metrics.store_up.set(1)
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if isinstance(runtime.store, RedisStore):
        # Shared: other instances move orders this one counted. If the store cannot answer, the
        # last count stands and gateway_store_up says why.
        with contextlib.suppress(StoreError):
            await runtime.orders.recount()
    # From the store on every backend (an indexed count): the outbox outlives the process that filled it.
    with contextlib.suppress(StoreError):
        runtime.metrics.notifications_pending.set(await runtime.store.count_notifications_pending())
    body = generate_latest(runtime.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _supplier_view(supplier: Supplier) -> dict[str, object]:
    limit = supplier.config.rate_limit
    return {
        "name": supplier.name,
        "protocol": supplier.config.protocol,
        "state": supplier.circuit.label,
        "disabled": supplier.disabled,
        "retired": supplier.retired,
        "routable": supplier.routable,
        "success_rate": supplier.success_rate(),
        "latency_p50_seconds": supplier.latency.quantile(0.5),
        "latency_p99_seconds": supplier.latency.quantile(0.99),
        "inflight": supplier.inflight,
        "max_concurrency": supplier.config.max_concurrency,
        "open_for_seconds": round(supplier.breaker.open_remaining(), 3),
        # This instance's last read of the balance call (CONTRACT.md §9).
        "balance": None if supplier.balance.cents is None else format_money(supplier.balance.cents),
        "balance_checked_at": None
        if supplier.balance.checked_at is None
        else iso_time(supplier.balance.checked_at),
        "balance_low": supplier.balance_low,
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
    # Breaker state, health and in-flight counts are this instance's own: say which one answered,
    # and on which store (its password masked), for operators running several behind one address.
    instance = {"id": runtime.instance_id, "store": redact_url(runtime.config.store)}
    return json_response(
        {"instance": instance, "suppliers": [_supplier_view(s) for s in runtime.suppliers.values()]}
    )


@routes.post("/admin/suppliers/{name}/disable")
async def disable_supplier(request: web.Request) -> web.Response:
    return await _switch_supplier(request, disabled=True)


@routes.post("/admin/suppliers/{name}/enable")
async def enable_supplier(request: web.Request) -> web.Response:
    return await _switch_supplier(request, disabled=False)


async def _switch_supplier(request: web.Request, *, disabled: bool) -> web.Response:
    """Keep the switch in the store (every instance on it follows), then apply it here.

    A store that cannot keep it raises `StoreError`, answered 503 `store_unavailable`: nothing changed.
    """
    runtime = request.app[RUNTIME]
    supplier = _supplier(runtime, request.match_info["name"])
    problems: Problems = []
    # Who switched is kept only when the request names someone: no default name, unlike a resolve.
    operator = _operator(request.headers, problems) if "X-Operator" in request.headers else None
    if problems:
        raise InvalidRequest("the request is invalid", details=problems)
    await runtime.switches.flip(SwitchKind.DISABLED, supplier.name, disabled, by=operator)
    return json_response(_supplier_view(supplier))


# -- orders ----------------------------------------------------------------------------------


def _single(query: MultiMapping[str], name: str, problems: Problems) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        problems.append({"field": name, "message": "must be given at most once"})
        return None
    # An empty value is no filter: `?status=&reason=` is how CONTRACT.md §4 spells the endpoint.
    return values[0] if values and values[0] else None


def _member(kind: type[Choice], name: str, query: MultiMapping[str], problems: Problems) -> Choice | None:
    text = _single(query, name, problems)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        problems.append({"field": name, "message": f"must be one of {', '.join(m.value for m in kind)}"})
        return None


def _list_filters(query: MultiMapping[str]) -> tuple[OrderStatus | None, Reason | None, int]:
    """`status`, `reason` and `limit` from the query string; every problem at once."""
    problems: Problems = [
        {"field": name, "message": "is not a known parameter"}
        for name in sorted(query.keys() - LIST_PARAMETERS)
    ]
    status = _member(OrderStatus, "status", query, problems)
    reason = _member(Reason, "reason", query, problems)
    limit = DEFAULT_LIST_LIMIT
    text = _single(query, "limit", problems)
    if text is not None:
        # isdecimal, not int(): int() also takes "+5", " 5" and "5_0". The length before int(), which
        # refuses more than 4300 digits with a ValueError (a 500).
        digits = text.isascii() and text.isdecimal() and len(text.lstrip("0")) <= len(str(MAX_LIST_LIMIT))
        if not digits or not 1 <= int(text) <= MAX_LIST_LIMIT:
            problems.append({"field": "limit", "message": f"must be an integer from 1 to {MAX_LIST_LIMIT}"})
        else:
            limit = int(text)
    if problems:
        raise InvalidRequest("the query has invalid parameters", details=problems)
    return status, reason, limit


def _operator(headers: Mapping[str, str], problems: Problems) -> str:
    name = headers.get("X-Operator")
    if name is None:
        return DEFAULT_OPERATOR
    if not 1 <= len(name) <= MAX_OPERATOR_CHARS or not name.isprintable():
        problems.append(
            {"field": "X-Operator", "message": f"must be 1 to {MAX_OPERATOR_CHARS} printable characters"}
        )
    return name


def _body_object(body: bytes, known: Set[str], problems: Problems) -> dict[str, Any]:
    """An operator request's body as a JSON object, its unknown fields added to `problems`.

    A body that is no object at all ends the reading: `InvalidRequest` with every problem so far.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problems.append({"field": "body", "message": f"is not valid JSON: {exc}"})
        raise InvalidRequest("the request is invalid", details=problems) from None
    if not isinstance(doc, dict):
        problems.append({"field": "body", "message": "must be a JSON object"})
        raise InvalidRequest("the request is invalid", details=problems)
    problems.extend(unknown_fields(doc, known))
    return doc


def _resolution(body: bytes, headers: Mapping[str, str]) -> tuple[OrderStatus, str, str]:
    """The resolve request's status, note and operator; every problem (body and header) at once."""
    problems: Problems = []
    operator = _operator(headers, problems)
    doc = _body_object(body, RESOLVE_FIELDS, problems)
    allowed = " or ".join(f'"{s.value}"' for s in RESOLVABLE)
    raw_status = doc.get("status")
    status: OrderStatus | None = None
    if raw_status is None:
        problems.append({"field": "status", "message": f"is required: {allowed}"})
    elif not isinstance(raw_status, str) or raw_status not in {s.value for s in RESOLVABLE}:
        problems.append({"field": "status", "message": f"must be {allowed}"})
    else:
        status = OrderStatus(raw_status)

    note = doc.get("note")
    if note is None:
        problems.append({"field": "note", "message": "is required: say why, for the record"})
    elif not isinstance(note, str):
        problems.append({"field": "note", "message": "must be a string"})
    elif not note.strip():
        problems.append({"field": "note", "message": "must not be empty"})
    elif len(note) > MAX_NOTE_CHARS:
        problems.append({"field": "note", "message": f"must be at most {MAX_NOTE_CHARS} characters"})

    if problems or status is None or not isinstance(note, str):
        raise InvalidRequest("the request is invalid", details=problems)
    return status, note, operator


@routes.get("/admin/orders")
async def list_orders(request: web.Request) -> web.Response:
    status, reason, limit = _list_filters(request.query)
    # One more than asked says whether the list was cut, without a count query.
    found = await request.app[RUNTIME].store.list_orders(status=status, reason=reason, limit=limit + 1)
    shown = found[:limit]
    return json_response(
        {
            "orders": [operator_view(o) for o in shown],
            "count": len(shown),
            "limit": limit,
            "has_more": len(found) > limit,
        }
    )


@routes.get("/admin/orders/{shop}/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    shop, order_id = request.match_info["shop"], request.match_info["order_id"]
    order = await request.app[RUNTIME].store.get_order(shop, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id!r} for shop {shop!r}")
    return json_response(operator_view(order))


@routes.post("/admin/orders/{shop}/{order_id}/resolve")
async def resolve_order(request: web.Request) -> web.Response:
    status, note, operator = _resolution(await request.read(), request.headers)
    order = await request.app[RUNTIME].orders.resolve(
        request.match_info["shop"],
        request.match_info["order_id"],
        status=status,
        note=note,
        operator=operator,
    )
    return json_response(operator_view(order))


@routes.post("/admin/reload")
async def reload_config(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        reloaded = await reload_from_file(runtime)
    except ConfigError as exc:
        raise InvalidConfig(
            f"configuration refused ({len(exc.problems)} problem(s)); the running one stays",
            details=[{"field": p.path, "message": p.message} for p in exc.problems],
        ) from None
    return json_response(
        {
            "status": "reloaded",
            "restart_required": list(reloaded.restart_required),
            "suppliers": len(runtime.config.suppliers),
            "products": len(runtime.config.products),
            "shops": len(runtime.config.shops),
        }
    )


# -- blocked accounts (CONTRACT.md §7) --------------------------------------------------------

BLOCK_FIELDS: Final = frozenset({"account", "product", "until", "note"})
BLOCK_LIST_PARAMETERS: Final = frozenset({"account"})
# Product names are letters, digits and _ . -; a glob adds * ? and [...] to them.
PRODUCT_GLOB: Final = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]{1,64}")
# The latest time a view can show: times are shown in UTC, and a later one (9999-12-31T23:59:59-01:00, say)
# would fail every view of the block, and every order for its account, once stored.
LATEST_UNTIL: Final = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def _block_view(block: AccountBlock) -> dict[str, object]:
    return {
        "account": block.account,
        "product": block.product,
        "until": None if block.until is None else iso_time(block.until),
        "note": block.note,
        "created_at": iso_time(block.created_at),
        "operator": block.operator,
    }


def _until(value: object, now: float, problems: Problems) -> float | None:
    if value is None:
        return None
    message = 'must be an ISO 8601 time with its offset, e.g. "2026-11-22T10:00:00+08:00", or null'
    if not isinstance(value, str):
        problems.append({"field": "until", "message": message})
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append({"field": "until", "message": message})
        return None
    if moment.tzinfo is None:
        # A time without an offset could be China time or UTC: eight hours apart.
        problems.append({"field": "until", "message": f"has no offset (Z or +08:00); {message}"})
        return None
    until = moment.timestamp()
    if not math.isfinite(until) or until <= now:
        problems.append({"field": "until", "message": "must be in the future (null: until deleted)"})
        return None
    if until > LATEST_UNTIL:
        problems.append({"field": "until", "message": "must be at most 9999-12-31T23:59:59Z"})
        return None
    return until


def _block_request(body: bytes, headers: Mapping[str, str], now: float) -> AccountBlock:
    """The block asked for; every problem (body and X-Operator) at once."""
    problems: Problems = []
    operator = _operator(headers, problems) if "X-Operator" in headers else None
    doc = _body_object(body, BLOCK_FIELDS, problems)
    account = doc.get("account")
    if account is None:
        problems.append({"field": "account", "message": "is required"})
    elif not isinstance(account, str):
        problems.append({"field": "account", "message": "must be a string"})
    elif (problem := account_problem(AccountKind.ANY, account)) is not None:
        problems.append({"field": "account", "message": problem})
    product = doc.get("product", "*")
    if not isinstance(product, str) or PRODUCT_GLOB.fullmatch(product) is None:
        problems.append(
            {"field": "product", "message": "must be a product name or glob (* ? [...]), 1 to 64 characters"}
        )
    until = _until(doc.get("until"), now, problems)
    note = doc.get("note", "")
    if not isinstance(note, str):
        problems.append({"field": "note", "message": "must be a string"})
    elif len(note) > MAX_NOTE_CHARS:
        problems.append({"field": "note", "message": f"must be at most {MAX_NOTE_CHARS} characters"})
    if problems or not isinstance(account, str) or not isinstance(product, str) or not isinstance(note, str):
        raise InvalidRequest("the request is invalid", details=problems)
    return AccountBlock(
        account=account, product=product, until=until, note=note, created_at=now, operator=operator
    )


@routes.post("/admin/blocked-accounts")
async def block_account(request: web.Request) -> web.Response:
    """Orders for the account (of products the glob matches) are refused `403 account_blocked` by every
    instance on the store from now on; a block for the same account and glob is replaced."""
    runtime = request.app[RUNTIME]
    block = _block_request(await request.read(), request.headers, runtime.clock.now())
    await runtime.store.block_account(block)
    return json_response(_block_view(block), 201)


@routes.get("/admin/blocked-accounts")
async def list_blocked_accounts(request: web.Request) -> web.Response:
    """The blocks in force, by account then glob; `?account=` for one account's."""
    problems: Problems = [
        {"field": name, "message": "is not a known parameter"}
        for name in sorted(request.query.keys() - BLOCK_LIST_PARAMETERS)
    ]
    account = _single(request.query, "account", problems)
    if problems:
        raise InvalidRequest("the query has invalid parameters", details=problems)
    runtime = request.app[RUNTIME]
    blocks = await runtime.store.account_blocks(runtime.clock.now(), account)
    return json_response({"blocked_accounts": [_block_view(b) for b in blocks], "count": len(blocks)})


@routes.delete("/admin/blocked-accounts/{account}")
async def unblock_account(request: web.Request) -> web.Response:
    """Every block of the account goes; 404 if none was in force."""
    runtime = request.app[RUNTIME]
    account = request.match_info["account"]
    removed = await runtime.store.unblock_account(account)
    now = runtime.clock.now()
    active = [b for b in removed if b.active(now)]
    if not active:
        raise NotFound(f"account {account!r} is not blocked")
    return json_response({"account": account, "removed": [_block_view(b) for b in active]})


# -- figures (CONTRACT.md §9) -------------------------------------------------------------------

STATS_PARAMETERS: Final = frozenset({"from", "to", "by"})
STATS_PAGE: Final = 1000  # orders read per store call: the figures never hold a whole window
MAX_STATS_DAYS: Final = 92  # a quarter: every order of the window is read, so it is bounded
MOMENT_FORMAT: Final = 'an ISO 8601 time with its offset ("2026-11-22T00:00:00+08:00") or a date (China day)'


def _moment(query: MultiMapping[str], name: str, default: float, problems: Problems) -> float:
    text = _single(query, name, problems)
    if text is None:
        return default
    try:
        moment = parse_moment(text)
    except (ValueError, OverflowError) as exc:
        problems.append({"field": name, "message": f"{exc}: must be {MOMENT_FORMAT}"})
        return default
    if not math.isfinite(moment):
        problems.append({"field": name, "message": f"must be {MOMENT_FORMAT}"})
    return moment


def _stats_request(query: MultiMapping[str], now: float) -> tuple[float, float, Grouping]:
    """`from`, `to` (default: today in China) and `by` (default: supplier); every problem at once."""
    problems: Problems = [
        {"field": name, "message": "is not a known parameter"}
        for name in sorted(query.keys() - STATS_PARAMETERS)
    ]
    today, tomorrow = china_day(now)
    since = _moment(query, "from", today, problems)
    until = _moment(query, "to", tomorrow, problems)
    by = Grouping.SUPPLIER
    text = _single(query, "by", problems)
    if text is not None:
        try:
            by = Grouping(text)
        except ValueError:
            choices = ", ".join(g.value for g in Grouping)
            problems.append({"field": "by", "message": f"must be one of {choices}"})
    if not problems and until <= since:
        problems.append({"field": "to", "message": "must be after from"})
    elif not problems and until - since > MAX_STATS_DAYS * 86_400:
        problems.append({"field": "to", "message": f"must be at most {MAX_STATS_DAYS} days after from"})
    if problems:
        raise InvalidRequest("the query has invalid parameters", details=problems)
    return since, until, by


@routes.get("/admin/stats")
async def stats(request: web.Request) -> web.Response:
    """Figures of the orders placed in [from, to), read from the store page by page (every instance's)."""
    runtime = request.app[RUNTIME]
    since, until, by = _stats_request(request.query, runtime.clock.now())
    figures = Figures(by)
    after: tuple[float, str] | None = None
    while True:
        page = await runtime.store.orders_created(since, until, after=after, limit=STATS_PAGE)
        for order in page:
            figures.add(order)
        if len(page) < STATS_PAGE:
            break
        after = (page[-1].created_at, page[-1].uid)
    window = {"from": iso_time(since), "to": iso_time(until), "by": by.value}
    return json_response({**window, "rows": figures.rows()})


# -- operator actions (CONTRACT.md §10) -------------------------------------------------------

RESUBMIT_FIELDS: Final = frozenset({"supplier", "note"})


def _resubmission(body: bytes, headers: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """The resubmit request's supplier and note (both optional; no body at all asks for neither) and
    operator; every problem (body and header) at once. A body of whitespace is not JSON: refused."""
    problems: Problems = []
    operator = _operator(headers, problems)
    doc = _body_object(body, RESUBMIT_FIELDS, problems) if body else {}
    supplier = doc.get("supplier")
    if supplier is not None and (not isinstance(supplier, str) or not supplier):
        problems.append(
            {"field": "supplier", "message": "must be the name of a supplier that offers the product"}
        )
    note = doc.get("note")
    if note is not None and not isinstance(note, str):
        problems.append({"field": "note", "message": "must be a string"})
    elif isinstance(note, str) and len(note) > MAX_NOTE_CHARS:
        problems.append({"field": "note", "message": f"must be at most {MAX_NOTE_CHARS} characters"})
    if (
        problems
        or not (supplier is None or isinstance(supplier, str))
        or not (note is None or isinstance(note, str))
    ):
        raise InvalidRequest("the request is invalid", details=problems)
    return supplier, note, operator


@routes.post("/admin/orders/{shop}/{order_id}/resubmit")
async def resubmit_order(request: web.Request) -> web.Response:
    """A new attempt (补单) for a processing order whose every attempt certainly charged nothing:
    `202` with the order; `409 unsafe_resubmit` naming the open attempts; `409 order_final`."""
    supplier, note, operator = _resubmission(await request.read(), request.headers)
    order = await request.app[RUNTIME].orders.resubmit(
        request.match_info["shop"],
        request.match_info["order_id"],
        supplier=supplier,
        note=note.strip() if note else None,
        operator=operator,
    )
    return json_response(operator_view(order), 202)


@routes.post("/admin/orders/{shop}/{order_id}/notify")
async def renotify_order(request: web.Request) -> web.Response:
    """The shop's notification of a final order, sent again now (even after it gave up): `202` with the
    order; `409 order_not_final`, or `409 no_notify_url` for an order placed without one."""
    runtime = request.app[RUNTIME]
    shop, order_id = request.match_info["shop"], request.match_info["order_id"]
    order = await runtime.store.get_order(shop, order_id)
    if order is None:
        raise OrderNotFound(f"no order {order_id!r} for shop {shop!r}")
    return json_response(operator_view(await runtime.notifier.renotify(order.uid)), 202)
