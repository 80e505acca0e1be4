"""The OpenAPI document of the admin listener (CONTRACT.md §4, §7, §9, §10): health, metrics, `/admin/*`.

What each route answers; the routes themselves are `gateway/admin.py`'s and `console.py`'s. The bearer token
guards every `/admin/*` route but the console's page and files, this document included: it is an
`/admin/*` route like the others, and the contract makes the console the one exception.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from gateway import admin, console
from gateway.errors import (
    ApiError,
    BodyTooLarge,
    Forbidden,
    InternalError,
    InvalidConfig,
    InvalidRequest,
    NoNotifyUrl,
    NoSupplierAvailable,
    NotFound,
    OrderAlreadyFinal,
    OrderNotFinal,
    OrderNotFound,
    StoreUnavailable,
    Unauthenticated,
    UnsafeResubmit,
)
from gateway.openapi.document import HTTP_LIMITS, Document, Operation, Payload, Reply, parameter
from gateway.openapi.models import (
    BlockedAccount,
    BlockedAccountList,
    BlockRequest,
    Health,
    OperatorOrder,
    OrderList,
    Readiness,
    ReloadResult,
    ResolveRequest,
    ResubmitRequest,
    Stats,
    SupplierList,
    SupplierView,
    Unblocked,
)
from gateway.order import OrderStatus, Reason
from gateway.stats import Grouping

PATH: Final = "/admin/openapi.json"
API_VERSION: Final = "1"

SECURITY_SCHEMES: Final = {
    "AdminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <admin.token>` from gateway.yaml. Every `/admin/*` route "
        "but the console's page and files needs it: `401 unauthenticated` without the right token, "
        "`403 forbidden` when gateway.yaml configures none (then `/admin/*` refuses everything).",
    }
}
TOKEN: Final[tuple[dict[str, list[str]], ...]] = ({"AdminToken": []},)
NONE: Final[tuple[dict[str, list[str]], ...]] = ()

TOKEN_ERRORS: Final[dict[type[ApiError], str]] = {
    Unauthenticated: "no bearer token, or not the configured one",
    Forbidden: "gateway.yaml configures no admin token",
    StoreUnavailable: "the store cannot be read or written now; nothing changed",
    InternalError: "an unexpected failure inside the gateway",
}
QUERY_ERROR: Final[dict[type[ApiError], str]] = {
    InvalidRequest: "a parameter is invalid, repeated or unknown; `details` lists every problem",
}
BODY_ERRORS: Final[dict[type[ApiError], str]] = {
    InvalidRequest: "malformed JSON, fields or `X-Operator`; `details` lists every problem",
    BodyTooLarge: "the body is larger than the admin listener takes (1 MiB)",
}
OPERATOR: Final = parameter(
    "header",
    "X-Operator",
    {"type": "string", "minLength": 1, "maxLength": admin.MAX_OPERATOR_CHARS},
    f"who acts, kept with the change: 1 to {admin.MAX_OPERATOR_CHARS} printable characters",
)
SHOP: Final = parameter("path", "shop", {"type": "string"}, "the shop's id", example="demo")
ORDER_ID: Final = parameter(
    "path", "order_id", {"type": "string"}, "the shop's order_id", example="SHOP-20261122-0001"
)
SUPPLIER: Final = parameter("path", "name", {"type": "string"}, "the supplier's name", example="fulu")
ORDER_NOT_FOUND: Final[dict[type[ApiError], str]] = {OrderNotFound: "no such order for this shop"}


# The admin listener reads an empty query value as the parameter not given (`?status=&reason=` is how the
# contract spells the endpoint), for every parameter: each schema admits "".
EMPTY: Final = {"type": "string", "enum": [""]}


def _choice(values: list[str]) -> dict[str, object]:
    return {"type": "string", "enum": ["", *values]}


def health() -> tuple[Operation, ...]:
    return (
        Operation(
            method="GET",
            path="/healthz",
            operation_id="healthz",
            summary="The process is alive",
            tags=("health",),
            replies={200: Reply(description="alive", model=Health)},
            errors={InternalError: "an unexpected failure inside the gateway"},
            security=NONE,
        ),
        Operation(
            method="GET",
            path="/readyz",
            operation_id="readyz",
            summary="The store answers and a configuration is loaded",
            tags=("health",),
            replies={200: Reply(description="ready", model=Readiness)},
            errors={
                StoreUnavailable: "the store does not answer",
                InternalError: "an unexpected failure inside the gateway",
            },
            security=NONE,
        ),
        Operation(
            method="GET",
            path="/metrics",
            operation_id="metrics",
            summary="Prometheus metrics",
            tags=("health",),
            replies={
                200: Reply(
                    description="the Prometheus text exposition format",
                    content={"text/plain": {"schema": {"type": "string"}}},
                )
            },
            errors={InternalError: "an unexpected failure inside the gateway"},
            security=NONE,
        ),
    )


def suppliers() -> tuple[Operation, ...]:
    def switch(verb: str, disabled: str) -> Operation:
        return Operation(
            method="POST",
            path=f"/admin/suppliers/{{name}}/{verb}",
            operation_id=f"{verb}Supplier",
            summary=f"{verb.capitalize()} a supplier on every instance of the store",
            tags=("suppliers",),
            description=f"The switch is kept in the store, so every instance on it follows: {disabled}",
            parameters=(SUPPLIER, OPERATOR),
            replies={200: Reply(description="the supplier, switched", model=SupplierView)},
            errors={
                InvalidRequest: "an invalid `X-Operator`",
                **TOKEN_ERRORS,
                NotFound: "no supplier of that name",
            },
        )

    return (
        Operation(
            method="GET",
            path="/admin/suppliers",
            operation_id="listSuppliers",
            summary="Suppliers: breaker state, health, in-flight orders, balance",
            tags=("suppliers",),
            replies={
                200: Reply(
                    description="the suppliers, as the answering instance sees them", model=SupplierList
                )
            },
            errors=TOKEN_ERRORS,
        ),
        switch("disable", "routing skips the supplier and `gateway_supplier_up` is 0."),
        switch("enable", "routing takes the supplier again."),
    )


def orders() -> tuple[Operation, ...]:
    path = "/admin/orders/{shop}/{order_id}"
    return (
        Operation(
            method="GET",
            path="/admin/orders",
            operation_id="listOrders",
            summary="Orders by status and reason, e.g. those that need a person",
            tags=("orders",),
            parameters=(
                parameter("query", "status", _choice([s.value for s in OrderStatus]), "only this status"),
                parameter("query", "reason", _choice([r.value for r in Reason]), "only this reason"),
                parameter(
                    "query",
                    "limit",
                    {"anyOf": [{"type": "integer", "minimum": 1, "maximum": admin.MAX_LIST_LIMIT}, EMPTY]},
                    f"at most this many (default {admin.DEFAULT_LIST_LIMIT}; empty: the default)",
                ),
            ),
            replies={
                200: Reply(description="the orders; `has_more` when the limit cut the list", model=OrderList)
            },
            errors={**QUERY_ERROR, **TOKEN_ERRORS},
        ),
        Operation(
            method="GET",
            path=path,
            operation_id="getOperatorOrder",
            summary="One order with its attempts, incidents and notification",
            tags=("orders",),
            parameters=(SHOP, ORDER_ID),
            replies={200: Reply(description="the order as operators see it", model=OperatorOrder)},
            errors={**TOKEN_ERRORS, **ORDER_NOT_FOUND},
        ),
        Operation(
            method="POST",
            path=f"{path}/resolve",
            operation_id="resolveOrder",
            summary="End a processing order by an operator's decision",
            tags=("orders",),
            description="For orders nobody can settle (`manual_review`): ask the supplier what happened "
            "first. The shop is notified as for any final order.",
            parameters=(SHOP, ORDER_ID, OPERATOR),
            payload=Payload(description="the decision and why", model=ResolveRequest),
            replies={200: Reply(description="the order, final", model=OperatorOrder)},
            errors={
                **BODY_ERRORS,
                **TOKEN_ERRORS,
                **ORDER_NOT_FOUND,
                OrderAlreadyFinal: "the order is already final; a final state never changes",
            },
        ),
        Operation(
            method="POST",
            path=f"{path}/resubmit",
            operation_id="resubmitOrder",
            summary="Start a new attempt (补单) for an order whose every attempt certainly charged nothing",
            tags=("orders",),
            parameters=(SHOP, ORDER_ID, OPERATOR),
            payload=Payload(
                description="optionally, the one supplier to try and a note",
                required=False,
                model=ResubmitRequest,
            ),
            replies={202: Reply(description="the order with its new attempt under way", model=OperatorOrder)},
            errors={
                InvalidRequest: "malformed JSON or fields, an invalid `X-Operator`, or a supplier that "
                "does not offer the order's product",
                BodyTooLarge: BODY_ERRORS[BodyTooLarge],
                **TOKEN_ERRORS,
                **ORDER_NOT_FOUND,
                OrderAlreadyFinal: "the order is already final",
                UnsafeResubmit: "an attempt is open or unknown and may have charged; `details` names each",
                NoSupplierAvailable: "no offer for the product takes orders now; the order is unchanged",
            },
        ),
        Operation(
            method="POST",
            path=f"{path}/notify",
            operation_id="renotifyOrder",
            summary="Send the shop's notification of a final order again now, even after it gave up",
            tags=("orders",),
            parameters=(SHOP, ORDER_ID),
            replies={202: Reply(description="the order; its notification is due now", model=OperatorOrder)},
            errors={
                **TOKEN_ERRORS,
                **ORDER_NOT_FOUND,
                OrderNotFinal: "the order is not final yet",
                NoNotifyUrl: "the order was placed without a notify_url",
            },
        ),
    )


def reload() -> Operation:
    return Operation(
        method="POST",
        path="/admin/reload",
        operation_id="reloadConfig",
        summary="Re-read gateway.yaml (as SIGHUP does)",
        tags=("configuration",),
        replies={200: Reply(description="the new configuration is in force", model=ReloadResult)},
        errors={
            InvalidConfig: "the file was refused; `details` names each key path, and the running "
            "configuration stays",
            **TOKEN_ERRORS,
        },
    )


def blocked_accounts() -> tuple[Operation, ...]:
    path = "/admin/blocked-accounts"
    account = parameter("path", "account", {"type": "string"}, "the blocked account", example="13800138000")
    links = {
        "Unblock": {
            "operationId": "unblockAccount",
            "parameters": {"account": "$response.body#/account"},
            "description": "every block of the account goes",
        },
        "ListAccountBlocks": {
            "operationId": "listBlockedAccounts",
            "parameters": {"account": "$response.body#/account"},
            "description": "the account's blocks in force",
        },
    }
    return (
        Operation(
            method="POST",
            path=path,
            operation_id="blockAccount",
            summary="Refuse orders for an account (`403 account_blocked`) on every instance",
            tags=("accounts",),
            description="A block for the same account and product glob replaces the earlier one.",
            parameters=(OPERATOR,),
            payload=Payload(
                description="the account, which products, until when, and why", model=BlockRequest
            ),
            replies={201: Reply(description="the block, in force", model=BlockedAccount, links=links)},
            errors={**BODY_ERRORS, **TOKEN_ERRORS},
        ),
        Operation(
            method="GET",
            path=path,
            operation_id="listBlockedAccounts",
            summary="The blocks in force, by account then product glob",
            tags=("accounts",),
            parameters=(
                parameter("query", "account", {"type": "string"}, "only this account's blocks (empty: all)"),
            ),
            replies={200: Reply(description="the blocks", model=BlockedAccountList)},
            errors={**QUERY_ERROR, **TOKEN_ERRORS},
        ),
        Operation(
            method="DELETE",
            path=f"{path}/{{account}}",
            operation_id="unblockAccount",
            summary="Lift every block of an account",
            tags=("accounts",),
            parameters=(account,),
            replies={200: Reply(description="the blocks removed", model=Unblocked)},
            errors={**TOKEN_ERRORS, NotFound: "the account is not blocked"},
        ),
    )


def stats() -> Operation:
    moment = {"type": "string", "examples": ["2026-11-22T00:00:00+08:00", "2026-11-22"]}
    return Operation(
        method="GET",
        path="/admin/stats",
        operation_id="stats",
        summary="Figures of the orders placed in a window, by supplier, product or shop",
        tags=("figures",),
        description=f"Computed from the stored orders of every instance; an order counts for the supplier "
        f"of its deciding attempt. The window is at most {admin.MAX_STATS_DAYS} days.",
        parameters=(
            parameter(
                "query",
                "from",
                moment,
                "an ISO 8601 time with its offset, or a date (that China day's "
                "midnight); default (or empty) today's midnight in China",
            ),
            parameter(
                "query", "to", moment, "as `from`, after it; default (or empty) the next midnight in China"
            ),
            parameter(
                "query",
                "by",
                _choice([g.value for g in Grouping]),
                "one row per supplier (default, or empty), product or shop",
            ),
        ),
        replies={200: Reply(description="the window and its rows", model=Stats)},
        errors={**QUERY_ERROR, **TOKEN_ERRORS},
    )


def console_files() -> tuple[Operation, ...]:
    return (
        Operation(
            method="GET",
            path="/admin/",
            operation_id="console",
            summary="The operator console, a web page (no token: it holds no data)",
            tags=("console",),
            description="The page asks for the token once and sends it with every `/admin/*` call it makes.",
            replies={
                200: Reply(description="the page", content={"text/html": {"schema": {"type": "string"}}})
            },
            errors={InternalError: "an unexpected failure inside the gateway"},
            security=NONE,
        ),
        Operation(
            method="GET",
            path="/admin/static/{name}",
            operation_id="consoleFile",
            summary="The console's script and stylesheet (no token)",
            tags=("console",),
            parameters=(
                parameter("path", "name", {"type": "string", "enum": sorted(console.FILES)}, "the file"),
            ),
            replies={
                200: Reply(
                    description="the file",
                    content={
                        media: {"schema": {"type": "string"}} for media in sorted(set(console.FILES.values()))
                    },
                )
            },
            errors={NotFound: "no console file of that name", InternalError: "an unexpected failure"},
            security=NONE,
        ),
    )


def document_itself() -> Operation:
    return Operation(
        method="GET",
        path=PATH,
        operation_id="adminOpenApi",
        summary="This document",
        tags=("documents",),
        replies={
            200: Reply(
                description="the OpenAPI 3.1 document of the admin listener",
                content={"application/json": {"schema": {"type": "object"}}},
            )
        },
        errors=TOKEN_ERRORS,
    )


def admin_document() -> Document:
    document = Document(
        title="Supplier gateway: admin API",
        version=API_VERSION,
        description="The admin listener (`admin.listen`): health, readiness and Prometheus metrics without a "
        'token; operator actions under `/admin/*` with the bearer token. Errors are `{"error": {"code", '
        '"message", "details"?}}` with the codes each response names. ' + HTTP_LIMITS,
        security_schemes=SECURITY_SCHEMES,
        security=TOKEN,
        tags={
            "health": "liveness, readiness and metrics: no token",
            "suppliers": "supplier state and switches",
            "orders": "orders that need a person, and what an operator may do with them",
            "configuration": "reloading gateway.yaml",
            "accounts": "blocked accounts",
            "figures": "order figures",
            "console": "the operator console's files: no token",
            "documents": "this document",
        },
    )
    document.add(
        *health(),
        *suppliers(),
        *orders(),
        reload(),
        *blocked_accounts(),
        stats(),
        *console_files(),
        document_itself(),
    )
    return document


@cache
def encoded() -> bytes:
    """The document as served. It depends on the code alone, never on the configuration: built once per
    process, however many applications (tests start hundreds) serve it."""
    return admin_document().encode()
