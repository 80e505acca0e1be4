"""The typed model of the whole `gateway.yaml` (CONTRACT.md §3), with its defaults and single-field rules.

Strict, closed, frozen pydantic models: the loader validates parsed YAML with them and the schema
generator describes them. No I/O and no environment reading here; the loader words the errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import suppress
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationInfo,
    WrapSerializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from adapters.interface import AccountKind, Verdict
from gateway.duration import DURATION_PATTERN, format_duration, parse_duration
from gateway.mobile import Carrier, Province
from gateway.money import format_money, parse_money
from gateway.secret import Secret

DOCUMENT: Final = "document"
"""Validation context key the loader sets: values read from YAML, where durations and money are strings."""

# Whole-string patterns (pydantic searches, so they carry their anchors), with what they mean.
HOST_PORT: Final = r"^(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5})$"
HTTP_URL: Final = r"^(?:https?://[^\s/?#]+(/[^\s]*)?)$"
STORE_URL: Final = r"^(?:memory://|sqlite:///.+|rediss?://[^\s]+|redis\+cluster://[^\s]+)$"
NAME: Final = r"^(?:[A-Za-z0-9_-]{1,64})$"
PRODUCT_NAME: Final = r"^(?:[A-Za-z0-9_.-]{1,64})$"
SKU: Final = r"^(?:\S{1,64})$"
RULES: Final[Mapping[str, str]] = {
    HOST_PORT: "must be host:port, e.g. 0.0.0.0:8080",
    HTTP_URL: "must be an http:// or https:// URL",
    STORE_URL: "must be memory://, sqlite:///path or a redis://, rediss:// or redis+cluster:// URL",
    NAME: "must be 1 to 64 of letters, digits, _ and -",
    PRODUCT_NAME: "must be 1 to 64 of letters, digits, _ . and -",
    SKU: "must be 1 to 64 non-space characters",
}
"""Each pattern in operator words: error messages and the schema's descriptions use them."""

# The strings gateway.money.parse_money accepts; a test holds the two to the same answers.
MONEY_PATTERN: Final = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
_E = TypeVar("_E", bound=StrEnum)


def _unit(parse: Callable[[str], object], kind: str, written: object) -> BeforeValidator:
    """Reads a number from the string the file writes (`"250ms"` -> 0.25, `"49.30"` -> 4930) with
    `parse`. Python callers may give the number itself; the file may not: it must name the unit."""

    def read(value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            with suppress(ValueError):  # InvalidMoney is a ValueError too
                return parse(value)
        elif not (isinstance(info.context, Mapping) and info.context.get(DOCUMENT)):
            return value
        raise PydanticCustomError(kind, f"expected a {kind}")

    return BeforeValidator(read, json_schema_input_type=written)


def _secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise PydanticCustomError("secret_type", "expected a string")


def _empty_when_none(empty: object) -> BeforeValidator:
    # A key whose lines are all commented out reads as null: it means "none", not a type error.
    return BeforeValidator(lambda value: empty if value is None else value)


# What the file holds, named for the JSON Schema; the models hold the numbers they stand for.
Duration = TypeAliasType(
    "Duration",
    Annotated[
        str,
        Field(
            pattern=f"^(?:{DURATION_PATTERN})$",
            description="A duration with a unit: ms, s, m or h (250ms, 2s, 1.5s, 5m, 24h)",
        ),
    ],
)
Money = TypeAliasType(
    "Money",
    Annotated[
        str,
        Field(
            pattern=MONEY_PATTERN,
            description='A decimal amount in a quoted string, at most two decimals ("49.30")',
        ),
    ],
)
# The writers show a number as the file writes it, for error messages and the schema's defaults.
_READ_SECONDS: Final = _unit(parse_duration, "duration", Duration)
_WRITE_SECONDS: Final = PlainSerializer(format_duration, when_used="json")
_READ_CENTS: Final = _unit(parse_money, "money", Money)
_WRITE_CENTS: Final = PlainSerializer(format_money, when_used="json")

# Bounds come before the reader so that they judge (and errors show) the converted number.
Seconds = Annotated[float, Field(ge=0), _READ_SECONDS, _WRITE_SECONDS]
PositiveSeconds = Annotated[float, Field(gt=0), _READ_SECONDS, _WRITE_SECONDS]
Cents = Annotated[int, _READ_CENTS, _WRITE_CENTS]
PositiveCents = Annotated[int, Field(ge=1), _READ_CENTS, _WRITE_CENTS]
Rate = Annotated[float, Field(ge=0, le=1)]
SecretText = Annotated[
    Secret,
    PlainValidator(_secret, json_schema_input_type=str),
    PlainSerializer(lambda secret: "****" if secret else "", when_used="json"),  # never the secret
]
# The file holds an enum's values: strict mode would accept only members.
Choice = Annotated[_E, Strict(False)]
Items = Annotated[tuple[_T, ...], _empty_when_none(())]
# Read-only once read; written out as the plain mapping it wraps.
FrozenMap = Annotated[
    Mapping[_K, _V],
    _empty_when_none({}),
    AfterValidator(MappingProxyType),
    WrapSerializer(lambda mapping, serialize: serialize(dict(mapping))),
]
Name = Annotated[str, Field(pattern=NAME)]
ProductName = Annotated[str, Field(pattern=PRODUCT_NAME)]


def _no_entries() -> Mapping[Any, Any]:
    return MappingProxyType({})


class Routing(StrEnum):
    PRIORITY = "priority"
    WEIGHTED = "weighted"
    ADAPTIVE = "adaptive"
    CHEAPEST = "cheapest"


class WhenExhausted(StrEnum):
    """What happens to an order whose offers are all used up, nothing charged (CONTRACT.md §10)."""

    FAIL = "fail"
    HOLD = "hold"


class CarrierCheck(StrEnum):
    PREFIX = "prefix"
    OFF = "off"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Section(BaseModel):
    """A mapping of `gateway.yaml`: strictly typed, closed to unknown keys, immutable once read.

    The docstring under a field is its help text in the JSON Schema.
    """

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    @model_validator(mode="before")
    @classmethod
    def _commented_out(cls, data: object) -> object:
        return {} if data is None else data


class ServerConfig(Section):
    listen: str = Field(default="0.0.0.0:8080", pattern=HOST_PORT)
    """Shop API and supplier callbacks listener"""
    public_url: str = Field(default="http://127.0.0.1:8080", pattern=HTTP_URL)
    """Base URL suppliers call back"""
    max_body_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)


class AdminConfig(Section):
    listen: str = Field(default="127.0.0.1:9901", pattern=HOST_PORT)
    """/metrics /healthz /readyz /admin/*"""
    token: SecretText = Secret("")
    """Bearer token for /admin/*; empty refuses everything"""


class OrdersConfig(Section):
    sync_wait: Annotated[float, Field(ge=0, le=10), _READ_SECONDS, _WRITE_SECONDS] = 2.0
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Suppliers tried per order"""
    reconcile_after: PositiveSeconds = 30.0
    reconcile_every: PositiveSeconds = 30.0
    not_found_grace: Seconds = 60.0
    manual_review_after: PositiveSeconds = 86400.0
    when_exhausted: Choice[WhenExhausted] = WhenExhausted.FAIL
    """fail, or hold for an operator (reason held) when every offer is used up"""
    hold_for: PositiveSeconds = 3600.0
    """How long an order stays held, then fails"""


class BackoffConfig(Section):
    initial: PositiveSeconds = 5.0
    max: PositiveSeconds = 3600.0


class NotifyConfig(Section):
    timeout: PositiveSeconds = 5.0
    max_attempts: int = Field(default=12, ge=1, le=100)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)


class LogConfig(Section):
    level: Choice[LogLevel] = LogLevel.INFO
    format: Choice[LogFormat] = LogFormat.JSON


class AccountLimitsConfig(Section):
    """Per account and China day (UTC+8), over all of the shop's products; failed orders do not count."""

    orders_per_day: Annotated[int, Field(ge=1)] | None = None
    """Orders per account per day"""
    value_per_day: PositiveCents | None = None
    """Face value x quantity per account per day"""


class RateLimitConfig(Section):
    rate: float = Field(default=100.0, gt=0)
    per: PositiveSeconds = 1.0
    burst: int = Field(default=20, ge=0)
    max_wait: Seconds = 0.25


class ShopConfig(Section):
    secret: SecretText
    """HMAC-SHA256 key the shop signs requests with"""
    products: Items[str] = ()
    """Glob patterns of product names the shop may sell"""
    notify_hosts: Items[str] = ()
    """Hosts allowed in notify_url"""
    duplicate_window: Seconds = 0.0
    """A new order_id for the same product and account within this time of an order that has not failed
    is 409 duplicate_suspected, unless the order says allow_duplicate; 0s: off"""
    account_limits: AccountLimitsConfig | None = None
    max_streams: int = Field(default=100, ge=1)
    """Open SSE and WebSocket streams the shop may hold; more are 429"""
    rate_limit: RateLimitConfig | None = None
    """Requests the shop may send (max_wait is not used: over it is 429 rate_limited)"""


class BreakerConfig(Section):
    window: PositiveSeconds = 30.0
    min_calls: int = Field(default=20, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    slow_call: PositiveSeconds = 2.0
    slow_call_rate: float = Field(default=0.5, gt=0, le=1)
    open_for: PositiveSeconds = 15.0
    max_open_for: PositiveSeconds = 300.0
    half_open_calls: int = Field(default=3, ge=1)


class TopUpConfig(Section):
    """Demo and test only: money paid into a simulated supplier's balance at a fixed pace."""

    amount: PositiveCents
    """Added to the balance each time"""
    every: PositiveSeconds
    """How often, counted from the simulator's start"""


class BalanceConfig(Section):
    """The gateway's watch of a supplier's prepaid balance (CONTRACT.md §9)."""

    check_every: PositiveSeconds = 60.0
    """How often the balance call is made"""
    low: Cents | None = None
    """Below it the supplier's balance_low is true; absent: no low mark"""
    reserve: Cents = 0
    """Kept untouched: an offer is skipped unless the balance covers reserve + its cost x quantity"""


class SimulateConfig(Section):
    """Demo and test only: serve this supplier from the bundled simulator at `base_url`."""

    latency: Seconds = 0.05
    """Delay before each reply"""
    result_after: Seconds = 0.2
    """Accept-to-final time"""
    success_rate: Rate = 0.97
    """Share of accepted orders that succeed; the rest fail"""
    partial_rate: Rate = 0.0
    """Share of successes delivered only in part, where the protocol can"""
    refuse_rate: Rate = 0.0
    """Share of submits refused before charging"""
    hang_rate: Rate = 0.0
    """Share of submits never answered"""
    hang_charges: bool = True
    """Whether a hung submit still charges"""
    error_rate: Rate = 0.0
    """Share of submits answered HTTP 500 after charging"""
    garbage_rate: Rate = 0.0
    """Share of submits answered with garbage after charging"""
    reset_rate: Rate = 0.0
    """Share of submits charged, then never answered: the connection is reset (RST). Drawn with
    refuse/hang/error/garbage/crash: those six rates together at most 1"""
    crash_rate: Rate = 0.0
    """Share of submits charged, then the supplier crashes: it stops listening, resets every open
    connection (this one included, unanswered) and refuses connects (ECONNREFUSED) for refuse_for.
    Needs the simulator served by Simulator.serve()"""
    refuse_for: Seconds = 1.0
    """How long a crash refuses connections, on the simulator's clock"""
    lagging_rate: Rate = 0.0
    """Share of charged submits that queries report as not found until lag_for after the submit (a
    lagging replica), and truthfully after; callbacks are not delayed"""
    lag_for: Seconds = 1.0
    """How long a lagging order stays not found, on the simulator's clock"""
    forged_callback_rate: Rate = 0.0
    """Share of charged orders whose real callbacks are preceded by forged ones, each sent once, claiming
    the opposite result (delivered vs failed): one with a bad signature and, for juhe (whose sign leaves
    sta out), a validly signed failure of a success. Sent even when the real callback is dropped"""
    callback_drop_rate: Rate = 0.0
    callback_duplicate_rate: Rate = 0.0
    callback_delay: Seconds = 0.0
    max_requests_per_second: float = Field(default=0.0, ge=0)
    """0: unlimited; above it, throttle"""
    seed: int | None = None
    """Random seed for repeatable runs"""
    balance: Cents = 100_000_000
    """Starting prepaid balance: every charge lowers it (a failure gives it back), and a submit it cannot
    pay for is refused with the protocol's balance-insufficient code"""
    top_up: TopUpConfig | None = None
    """Paid into the balance at a fixed pace; absent: never"""


class SupplierConfig(Section):
    protocol: str
    """fulu | ofpay | juhe | dayuanren"""
    base_url: str = Field(pattern=HTTP_URL)
    credentials: FrozenMap[str, SecretText]
    """Keys as the protocol's file names them"""
    timeout: PositiveSeconds = 5.0
    connect_timeout: PositiveSeconds = 1.0
    max_concurrency: int = Field(default=200, ge=1)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    codes: FrozenMap[str, Choice[Verdict]] = Field(default_factory=_no_entries)
    """Overrides of the adapter's code table"""
    disabled: bool = False
    """Start with this supplier taken out of routing"""
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    simulate: SimulateConfig | None = None


class OfferConfig(Section):
    supplier: str
    sku: str = Field(pattern=SKU)
    cost: Cents
    priority: int = Field(default=1, ge=0, le=1000)
    """Lower is tried first"""
    weight: int = Field(default=1, ge=0, le=1000)
    provinces: Annotated[tuple[Choice[Province], ...], Field(min_length=1)] | None = None
    """mobile_cn only: serves only numbers of these provinces (short names: 江苏, 广西, 内蒙古); a number
    whose province is unknown is not served. Not with exclude_provinces"""
    exclude_provinces: Items[Choice[Province]] = ()
    """mobile_cn only: serves every number but those of these provinces. Not with provinces"""


class ProductConfig(Section):
    account: Choice[AccountKind]
    face_value: PositiveCents
    offers: Items[OfferConfig] = Field(min_length=1)
    routing: Choice[Routing] = Routing.PRIORITY
    max_quantity: int = Field(default=100, ge=1, le=100)
    carrier: Choice[Carrier] | None = None
    """mobile_cn only: the carrier the product recharges (cmcc 中国移动, cucc 中国联通, ctcc 中国电信,
    cbn 中国广电)"""
    carrier_check: Choice[CarrierCheck] = CarrierCheck.PREFIX
    """prefix: a number whose prefix belongs to another carrier is 422 carrier_mismatch; off: sell to
    ported numbers (携号转网) too"""


class GatewayConfig(Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    store: str = Field(default="sqlite:///var/gateway.db", pattern=STORE_URL)
    orders: OrdersConfig = Field(default_factory=OrdersConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    shops: FrozenMap[Name, ShopConfig] = Field(default_factory=_no_entries)
    """Shops by id (X-Shop-Id)"""
    suppliers: FrozenMap[Name, SupplierConfig] = Field(default_factory=_no_entries)
    products: FrozenMap[ProductName, ProductConfig] = Field(default_factory=_no_entries)
