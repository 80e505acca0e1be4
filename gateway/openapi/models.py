"""The request and response bodies of both listeners, as pydantic models: the source of the OpenAPI schemas.

Descriptions only: the handlers read bodies with their own validators (`intake.py`, `admin.py`) and write
them with `views.py`; these models never validate or serialise a request. Limits, patterns and closed sets
come from the code's own constants and enums, so a change there changes the documents.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from adapters.interface import AccountKind, Outcome
from gateway.admin import MAX_LIST_LIMIT, MAX_NOTE_CHARS, PRODUCT_GLOB, RESOLVABLE
from gateway.breaker import CircuitState
from gateway.events import ResetReason
from gateway.intake import MAX_WAIT_SECONDS, ORDER_ID, RESERVED_ORDER_IDS
from gateway.mobile import Carrier, Province
from gateway.order import OrderStatus, Reason
from gateway.stats import Grouping
from gateway.streamtokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS

MAX_QUANTITY: Final = 100  # CONTRACT.md §1; a product may lower it (`products.*` quantity limits)
MAX_ACCOUNT_CHARS: Final = 128  # the longest kind, `any`
MAX_NOTIFY_URL_CHARS: Final = 2048


def _anchored(pattern: str) -> str:
    """A Python `fullmatch` pattern as a JSON Schema one: JSON Schema patterns match anywhere."""
    return f"^(?:{pattern})$"


def _absent_not_null(schema: dict[str, Any]) -> None:
    """For a field that is left out rather than sent as null: the schema of its value, without null."""
    schema.pop("default", None)
    choices = schema.pop("anyOf", None)
    if choices is not None:
        (only,) = [choice for choice in choices if choice != {"type": "null"}]
        schema.update(only)


def _absent(**constraints: Any) -> Any:
    """A field that is either there with a value or not there at all (never null); its default is the
    gateway's, not a value a client would send."""
    return Field(default=None, json_schema_extra=_absent_not_null, **constraints)


class _Body(BaseModel):
    """Every body names each of its fields: anything else is refused (requests) or never sent (responses)."""

    model_config = ConfigDict(extra="forbid")


Money = Annotated[
    str,
    Field(
        pattern=r"^(?:0|[1-9][0-9]*)(?:\.[0-9]{2})?$",
        description="CNY as a decimal string, never a float: whole amounts without decimals, others with two",
        examples=["49.30", "50"],
    ),
]
SignedMoney = Annotated[str, Field(pattern=r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]{2})?$", examples=["1000.00"])]
Moment = Annotated[
    datetime, Field(description="ISO 8601 UTC time with milliseconds, e.g. 2026-11-22T10:00:00.120Z")
]
OrderId = Annotated[
    str,
    Field(
        pattern=_anchored(ORDER_ID.pattern),
        description="1 to 64 of letters, digits, `_`, `.` and `-`",
        examples=["SHOP-20261122-0001"],
    ),
]
# A new order's id must also not name an event stream: it could never be read back.
NewOrderId = Annotated[
    OrderId,
    Field(
        description="1 to 64 of letters, digits, `_`, `.` and `-`, unique per shop (the idempotency key); "
        f"not {' or '.join(sorted(RESERVED_ORDER_IDS))}, which name event streams",
        json_schema_extra={"not": {"enum": sorted(RESERVED_ORDER_IDS)}},
    ),
]


# -- errors ------------------------------------------------------------------------------------


class FieldProblem(_Body):
    """One problem with one field (or `body`, or a header such as `X-Operator`)."""

    field: str = Field(description="the field, query parameter or header at fault")
    message: str


class OpenAttempt(_Body):
    """An attempt that may have charged, named by `409 unsafe_resubmit`."""

    supplier: str
    upstream_order_id: str
    outcome: Outcome


class ErrorInfo(_Body):
    code: str = Field(description="machine-readable; each response below lists the codes it may carry")
    message: str = Field(description="for people: what was wrong, never a secret or another shop's data")
    details: list[FieldProblem | OpenAttempt] = _absent()


class Error(_Body):
    """Every error of both listeners: one middleware renders the gateway's error tree (`errors.py`)."""

    error: ErrorInfo


# -- the shop API (CONTRACT.md §1, §7, §8) ---------------------------------------------------------


class OrderRequest(_Body):
    """`POST /v1/orders`: one unified recharge request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "SHOP-20261122-0001",
                    "product": "mobile.cmcc.50",
                    "account": "13800138000",
                    "quantity": 1,
                    "notify_url": "https://shop.example.com/hooks/recharge",
                    "wait_seconds": 2,
                }
            ]
        }
    )

    order_id: NewOrderId
    product: str = Field(
        description="a key of `products` in gateway.yaml that the shop may sell", examples=["mobile.cmcc.50"]
    )
    account: str = Field(
        min_length=1,
        max_length=MAX_ACCOUNT_CHARS,
        description=(
            "valid for the product's account kind, never normalised: "
            f"`{AccountKind.MOBILE_CN}` 11 ASCII digits `1[3-9][0-9]{{9}}`, "
            f"`{AccountKind.QQ}` 5 to 12 digits without a leading 0, "
            f"`{AccountKind.GAME}` 1 to 64 of letters, digits and `_.-@`, "
            f"`{AccountKind.ANY}` 1 to 128 printable characters, no whitespace at either end"
        ),
        examples=["13800138000"],
    )
    quantity: int = Field(
        default=1,
        ge=1,
        le=MAX_QUANTITY,
        description="at most 100, or the product's own lower limit; written as an integer (1, not 1.0)",
    )
    notify_url: str | None = Field(
        default=None,
        max_length=MAX_NOTIFY_URL_CHARS,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://",
        description="http(s) URL without credentials whose host is in the shop's `notify_hosts`; null: none",
    )
    wait_seconds: float = _absent(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="how long to hold the request for a final result; default `orders.sync_wait`",
    )
    allow_duplicate: bool = Field(
        default=False, description="a second purchase: passes the duplicate guard (`409 duplicate_suspected`)"
    )


class AccountInfo(_Body):
    """What a mobile number's prefix (号段) says; each null when the prefix does not tell."""

    carrier: Carrier | None
    province: Province | None = Field(description="short name without 省/市/自治区/特别行政区")


class Attempt(_Body):
    """One try of the order at one supplier, under its own upstream order id."""

    supplier: str
    upstream_order_id: str
    outcome: Outcome
    code: str | None = Field(description="the supplier's own code")
    message: str | None = Field(description="the supplier's words or a fixed sentence")
    duration_ms: int | None


# CONTRACT.md §1's order, with §7's account_info.
ORDER_EXAMPLE: Final[dict[str, Any]] = {
    "order_id": "SHOP-20261122-0001",
    "product": "mobile.cmcc.50",
    "account": "13800138000",
    "quantity": 1,
    "status": "succeeded",
    "reason": None,
    "message": "充值成功",
    "supplier": "fulu",
    "supplier_order_id": "F2026112210000001",
    "cost": "49.30",
    "delivered_value": "50",
    "created_at": "2026-11-22T10:00:00.120Z",
    "updated_at": "2026-11-22T10:00:07.480Z",
    "attempts": [
        {
            "supplier": "juhe",
            "upstream_order_id": "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01",
            "outcome": "not_executed",
            "code": "208503",
            "message": "余额不足",
            "duration_ms": 41,
        },
        {
            "supplier": "fulu",
            "upstream_order_id": "G01J8Z3Q7K2M4N6P8R0T2V4X6Z02",
            "outcome": "succeeded",
            "code": "0",
            "message": "充值成功",
            "duration_ms": 7360,
        },
    ],
    "account_info": {"carrier": "cmcc", "province": "北京"},
}


class _OrderFields(_Body):
    """What the shop's and the operator's view of an order share (all but the attempts)."""

    order_id: str
    product: str
    account: str
    quantity: int
    status: OrderStatus = Field(description="`processing` until final: `succeeded`, `failed` or `partial`")
    reason: Reason | None = Field(description="machine code beside the status; null on success and partial")
    message: str | None
    supplier: str | None = Field(description="the supplier of the deciding attempt")
    supplier_order_id: str | None
    cost: Money | None
    delivered_value: Money | None = Field(
        description="face value × quantity on success; what arrived on partial"
    )
    created_at: Moment
    updated_at: Moment
    account_info: AccountInfo = _absent(description="for `mobile_cn` products only: absent for other kinds")


class Order(_OrderFields):
    """The order as the shop sees it."""

    model_config = ConfigDict(json_schema_extra={"examples": [ORDER_EXAMPLE]})

    attempts: list[Attempt]


class StreamTokenRequest(_Body):
    """`POST /v1/stream-tokens`: both fields optional; an empty body takes every default."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"order_id": "SHOP-0001", "ttl_seconds": 300}]})

    order_id: OrderId | None = Field(default=None, description="the one order the token sees; null: all")
    ttl_seconds: int = Field(
        default=DEFAULT_TTL_SECONDS,
        ge=MIN_TTL_SECONDS,
        le=MAX_TTL_SECONDS,
        description="written as an integer (300, not 300.0)",
    )


class StreamToken(_Body):
    token: str = Field(description="opens `GET /v1/orders/ws?token=` with no other credential")
    expires_at: Moment


class StreamReset(_Body):
    """The data of an SSE `reset` event: events were lost, re-read the orders you follow."""

    reason: ResetReason
    message: str


class SocketMessage(_Body):
    """A WebSocket text frame from the gateway: `order` (with `id` and `order`) on every change, `reset`
    (with `id`, `reason`, `message`) when events were lost, `ping` every 20 s."""

    type: str = Field(json_schema_extra={"enum": ["order", "reset", "ping"]})
    id: str = _absent()
    order: Order = _absent()
    reason: ResetReason = _absent()
    message: str = _absent()


# -- the admin listener (CONTRACT.md §4, §7, §9, §10) ---------------------------------------------


class Health(_Body):
    status: str = Field(json_schema_extra={"enum": ["ok"]})


class Readiness(_Body):
    status: str = Field(json_schema_extra={"enum": ["ready"]})


class RateLimitView(_Body):
    rate: float
    per_seconds: float
    burst: int
    max_wait_seconds: float


class SupplierView(_Body):
    """A supplier as this instance sees it: breaker, health and in-flight counts are its own."""

    name: str
    protocol: str
    state: str = Field(json_schema_extra={"enum": [state.label for state in CircuitState]})
    disabled: bool
    retired: bool = Field(description="removed from gateway.yaml by a reload; finishing its open attempts")
    routable: bool
    success_rate: float | None
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None
    inflight: int
    max_concurrency: int
    open_for_seconds: float
    balance: SignedMoney | None = Field(description="this instance's last read of the balance call")
    balance_checked_at: Moment | None
    balance_low: bool
    rate_limit: RateLimitView


class Instance(_Body):
    id: str
    store: str = Field(description="the store URL, its password masked")


class SupplierList(_Body):
    instance: Instance
    suppliers: list[SupplierView]


class OperatorAttempt(Attempt):
    sku: str
    started_at: Moment
    replied: bool
    acknowledged: bool
    detail: str | None = Field(description="what went wrong, for operators only")
    supplier_order_id: str | None
    cost: Money
    delivered_value: Money | None


class Incident(_Body):
    """A report that contradicted the order: kept for operators, never applied."""

    at: Moment
    kind: str
    detail: str
    upstream_order_id: str | None
    repeats: int


class Delivery(_Body):
    at: Moment
    status: int | None = Field(description="the shop's HTTP status; null when no answer came")
    error: str | None
    duration_ms: int


class NotificationView(_Body):
    due_at: Moment | None
    attempts: int
    delivered_at: Moment | None
    gave_up: bool
    history: list[Delivery]


class OperatorOrder(_OrderFields):
    """The shop's order JSON plus what only operators see."""

    uid: str
    shop: str
    notify_url: str | None
    face_value: Money
    attempts: list[OperatorAttempt]
    incidents: list[Incident]
    notification: NotificationView | None


class OrderList(_Body):
    orders: list[OperatorOrder]
    count: int
    limit: int = Field(ge=1, le=MAX_LIST_LIMIT)
    has_more: bool


class ResolveRequest(_Body):
    """`POST /admin/orders/{shop}/{order_id}/resolve`: end a processing order by an operator's decision."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "failed", "note": "supplier confirmed: not charged"}]}
    )

    status: str = Field(json_schema_extra={"enum": [status.value for status in RESOLVABLE]})
    note: str = Field(
        min_length=1,
        max_length=MAX_NOTE_CHARS,
        pattern=r"\S",
        description="why, for the record: it becomes the order's message, which the shop is sent",
    )


class ResubmitRequest(_Body):
    """`POST /admin/orders/{shop}/{order_id}/resubmit` (补单): both optional; no body asks for neither."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"supplier": "fulu", "note": "balance topped up"}]}
    )

    supplier: str | None = Field(
        default=None, min_length=1, description="the one supplier to try; it must offer the order's product"
    )
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class ReloadResult(_Body):
    status: str = Field(json_schema_extra={"enum": ["reloaded"]})
    restart_required: list[str] = Field(description="changed settings that take effect only after a restart")
    suppliers: int
    products: int
    shops: int


class BlockRequest(_Body):
    """`POST /admin/blocked-accounts`: orders for the account are refused `403 account_blocked`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"account": "13800138000", "product": "mobile.*", "until": None, "note": "chargeback fraud"}
            ]
        }
    )

    account: str = Field(
        min_length=1,
        max_length=MAX_ACCOUNT_CHARS,
        pattern=r"^\S(?:.*\S)?$",
        description="1 to 128 printable characters with no whitespace at either end",
    )
    product: str = Field(
        default="*",
        pattern=_anchored(PRODUCT_GLOB.pattern),
        description="a product name or glob (`*`, `?`, `[...]`); default every product",
    )
    until: datetime | None = Field(
        default=None,
        description="a future ISO 8601 time with its offset, until 9999-12-31T23:59:59Z; null: until deleted",
    )
    note: str = Field(default="", max_length=MAX_NOTE_CHARS)


class BlockedAccount(_Body):
    account: str
    product: str
    until: Moment | None
    note: str
    created_at: Moment
    operator: str | None = Field(description="the request's `X-Operator`, if it named one")


class BlockedAccountList(_Body):
    blocked_accounts: list[BlockedAccount]
    count: int


class Unblocked(_Body):
    account: str
    removed: list[BlockedAccount]


class StatsRow(_Body):
    key: str | None = Field(
        description="the supplier, product or shop; null: orders that never had a supplier"
    )
    orders: int
    succeeded: int
    failed: int
    partial: int
    processing: int
    success_rate: float | None = Field(description="(succeeded + partial) / final orders; null without any")
    face_value: Money
    delivered_value: Money
    cost: Money
    latency_p50_seconds: float | None


class Stats(_Body):
    """Figures of the orders placed in [from, to), from the store (every instance's)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    since: Moment = Field(alias="from")
    until: Moment = Field(alias="to")
    by: Grouping
    rows: list[StatsRow]


RESPONSES: Final[tuple[type[BaseModel], ...]] = (
    Error,
    Order,
    StreamToken,
    StreamReset,
    SocketMessage,
    Health,
    Readiness,
    SupplierList,
    SupplierView,
    OperatorOrder,
    OrderList,
    ReloadResult,
    BlockedAccount,
    BlockedAccountList,
    Unblocked,
    Stats,
)
REQUESTS: Final[tuple[type[BaseModel], ...]] = (
    OrderRequest,
    StreamTokenRequest,
    ResolveRequest,
    ResubmitRequest,
    BlockRequest,
)
