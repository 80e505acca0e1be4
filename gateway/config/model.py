"""The typed model of the whole `gateway.yaml` (CONTRACT.md §3), with its defaults and rules.

Plain frozen dataclasses: the loader fills them from YAML, the schema generator describes them.
Field types use the markers in `constraints.py`; no I/O and no environment reading here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated

from adapters.interface import AccountKind, Verdict
from gateway.config.constraints import Doc, Duration, MinItems, Money, Pattern, Range
from gateway.mobile import Carrier, Province
from gateway.secret import Secret

HOST_PORT = Pattern(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}", "must be host:port, e.g. 0.0.0.0:8080"
)
HTTP_URL = Pattern(r"https?://[^\s/?#]+(/[^\s]*)?", "must be an http:// or https:// URL")
STORE_URL = Pattern(
    r"memory://|sqlite:///.+|rediss?://[^\s]+|redis\+cluster://[^\s]+",
    "must be memory://, sqlite:///path or a redis://, rediss:// or redis+cluster:// URL",
)
NAME = Pattern(r"[A-Za-z0-9_-]{1,64}", "must be 1 to 64 of letters, digits, _ and -")
PRODUCT_NAME = Pattern(r"[A-Za-z0-9_.-]{1,64}", "must be 1 to 64 of letters, digits, _ . and -")

Seconds = Annotated[float, Duration(), Range(0)]
PositiveSeconds = Annotated[float, Duration(), Range(0, exclusive_minimum=True)]
Rate = Annotated[float, Range(0, 1)]


def _empty() -> Mapping[str, Verdict]:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    listen: Annotated[str, HOST_PORT, Doc("Shop API and supplier callbacks listener")] = "0.0.0.0:8080"
    public_url: Annotated[str, HTTP_URL, Doc("Base URL suppliers call back")] = "http://127.0.0.1:8080"
    max_body_bytes: Annotated[int, Range(256, 16 * 1024 * 1024)] = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    listen: Annotated[str, HOST_PORT, Doc("/metrics /healthz /readyz /admin/*")] = "127.0.0.1:9901"
    token: Annotated[Secret, Doc("Bearer token for /admin/*; empty refuses everything")] = Secret("")  # noqa: RUF009 (immutable)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrdersConfig:
    sync_wait: Annotated[float, Duration(), Range(0, 10)] = 2.0
    max_attempts: Annotated[int, Range(1, 10), Doc("Suppliers tried per order")] = 3
    reconcile_after: PositiveSeconds = 30.0
    reconcile_every: PositiveSeconds = 30.0
    not_found_grace: Seconds = 60.0
    manual_review_after: PositiveSeconds = 86400.0
    when_exhausted: Annotated[
        WhenExhausted, Doc("fail, or hold for an operator (reason held) when every offer is used up")
    ] = WhenExhausted.FAIL
    hold_for: Annotated[
        float, Duration(), Range(0, exclusive_minimum=True), Doc("How long an order stays held, then fails")
    ] = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffConfig:
    initial: PositiveSeconds = 5.0
    max: PositiveSeconds = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyConfig:
    timeout: PositiveSeconds = 5.0
    max_attempts: Annotated[int, Range(1, 100)] = 12
    backoff: BackoffConfig = field(default_factory=BackoffConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: LogLevel = LogLevel.INFO
    format: LogFormat = LogFormat.JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountLimitsConfig:
    """Per account and China day (UTC+8), over all of the shop's products; failed orders do not count."""

    orders_per_day: Annotated[int | None, Range(1), Doc("Orders per account per day")] = None
    value_per_day: Annotated[
        int | None, Money(), Range(1), Doc("Face value x quantity per account per day")
    ] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShopConfig:
    secret: Annotated[Secret, Doc("HMAC-SHA256 key the shop signs requests with")]
    products: Annotated[tuple[str, ...], Doc("Glob patterns of product names the shop may sell")] = ()
    notify_hosts: Annotated[tuple[str, ...], Doc("Hosts allowed in notify_url")] = ()
    duplicate_window: Annotated[
        float,
        Duration(),
        Range(0),
        Doc(
            "A new order_id for the same product and account within this time of an order that has not"
            " failed is 409 duplicate_suspected, unless the order says allow_duplicate; 0s: off"
        ),
    ] = 0.0
    account_limits: AccountLimitsConfig | None = None
    max_streams: Annotated[
        int, Range(1), Doc("Open SSE and WebSocket streams the shop may hold; more are 429")
    ] = 100
    rate_limit: Annotated[
        RateLimitConfig | None,
        Doc("Requests the shop may send (max_wait is not used: over it is 429 rate_limited)"),
    ] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitConfig:
    rate: Annotated[float, Range(0, exclusive_minimum=True)] = 100.0
    per: PositiveSeconds = 1.0
    burst: Annotated[int, Range(0)] = 20
    max_wait: Seconds = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    window: PositiveSeconds = 30.0
    min_calls: Annotated[int, Range(1)] = 20
    failure_rate: Annotated[float, Range(0, 1, exclusive_minimum=True)] = 0.5
    slow_call: PositiveSeconds = 2.0
    slow_call_rate: Annotated[float, Range(0, 1, exclusive_minimum=True)] = 0.5
    open_for: PositiveSeconds = 15.0
    max_open_for: PositiveSeconds = 300.0
    half_open_calls: Annotated[int, Range(1)] = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class TopUpConfig:
    """Demo and test only: money paid into a simulated supplier's balance at a fixed pace."""

    amount: Annotated[int, Money(), Range(1), Doc("Added to the balance each time")]
    every: Annotated[PositiveSeconds, Doc("How often, counted from the simulator's start")]


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceConfig:
    """The gateway's watch of a supplier's prepaid balance (CONTRACT.md §9)."""

    check_every: Annotated[PositiveSeconds, Doc("How often the balance call is made")] = 60.0
    low: Annotated[
        int | None, Money(), Doc("Below it the supplier's balance_low is true; absent: no low mark")
    ] = None
    reserve: Annotated[
        int,
        Money(),
        Doc("Kept untouched: an offer is skipped unless the balance covers reserve + its cost x quantity"),
    ] = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulateConfig:
    """Demo and test only: serve this supplier from the bundled simulator at `base_url`."""

    latency: Annotated[float, Duration(), Range(0), Doc("Delay before each reply")] = 0.05
    result_after: Annotated[float, Duration(), Range(0), Doc("Accept-to-final time")] = 0.2
    success_rate: Annotated[Rate, Doc("Share of accepted orders that succeed; the rest fail")] = 0.97
    partial_rate: Annotated[
        Rate, Doc("Share of successes delivered only in part, where the protocol can")
    ] = 0.0
    refuse_rate: Annotated[Rate, Doc("Share of submits refused before charging")] = 0.0
    hang_rate: Annotated[Rate, Doc("Share of submits never answered")] = 0.0
    hang_charges: Annotated[bool, Doc("Whether a hung submit still charges")] = True
    error_rate: Annotated[Rate, Doc("Share of submits answered HTTP 500 after charging")] = 0.0
    garbage_rate: Annotated[Rate, Doc("Share of submits answered with garbage after charging")] = 0.0
    reset_rate: Annotated[
        Rate,
        Doc(
            "Share of submits charged, then never answered: the connection is reset (RST). Drawn"
            " with refuse/hang/error/garbage/crash: those six rates together at most 1"
        ),
    ] = 0.0
    crash_rate: Annotated[
        Rate,
        Doc(
            "Share of submits charged, then the supplier crashes: it stops listening, resets every"
            " open connection (this one included, unanswered) and refuses connects (ECONNREFUSED)"
            " for refuse_for. Needs the simulator served by Simulator.serve()"
        ),
    ] = 0.0
    refuse_for: Annotated[
        float, Duration(), Range(0), Doc("How long a crash refuses connections, on the simulator's clock")
    ] = 1.0
    lagging_rate: Annotated[
        Rate,
        Doc(
            "Share of charged submits that queries report as not found until lag_for after the"
            " submit (a lagging replica), and truthfully after; callbacks are not delayed"
        ),
    ] = 0.0
    lag_for: Annotated[
        float, Duration(), Range(0), Doc("How long a lagging order stays not found, on the simulator's clock")
    ] = 1.0
    forged_callback_rate: Annotated[
        Rate,
        Doc(
            "Share of charged orders whose real callbacks are preceded by forged ones, each sent once,"
            " claiming the opposite result (delivered vs failed): one with a bad signature and, for"
            " juhe (whose sign leaves sta out), a validly signed failure of a success. Sent even when"
            " the real callback is dropped"
        ),
    ] = 0.0
    callback_drop_rate: Rate = 0.0
    callback_duplicate_rate: Rate = 0.0
    callback_delay: Seconds = 0.0
    max_requests_per_second: Annotated[float, Range(0), Doc("0: unlimited; above it, throttle")] = 0.0
    seed: Annotated[int | None, Doc("Random seed for repeatable runs")] = None
    balance: Annotated[
        int,
        Money(),
        Doc(
            "Starting prepaid balance: every charge lowers it (a failure gives it back), and a submit"
            " it cannot pay for is refused with the protocol's balance-insufficient code"
        ),
    ] = 100_000_000
    top_up: Annotated[TopUpConfig | None, Doc("Paid into the balance at a fixed pace; absent: never")] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplierConfig:
    protocol: Annotated[str, Doc("fulu | ofpay | juhe | dayuanren")]
    base_url: Annotated[str, HTTP_URL]
    credentials: Annotated[Mapping[str, Secret], Doc("Keys as the protocol's file names them")]
    timeout: PositiveSeconds = 5.0
    connect_timeout: PositiveSeconds = 1.0
    max_concurrency: Annotated[int, Range(1)] = 200
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    codes: Annotated[Mapping[str, Verdict], Doc("Overrides of the adapter's code table")] = field(
        default_factory=_empty
    )
    disabled: Annotated[bool, Doc("Start with this supplier taken out of routing")] = False
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    simulate: SimulateConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferConfig:
    supplier: str
    sku: Annotated[str, Pattern(r"\S{1,64}", "must be 1 to 64 non-space characters")]
    cost: Annotated[int, Money()]
    priority: Annotated[int, Range(0, 1000), Doc("Lower is tried first")] = 1
    weight: Annotated[int, Range(0, 1000)] = 1
    provinces: Annotated[
        tuple[Province, ...] | None,
        MinItems(1),
        Doc(
            "mobile_cn only: serves only numbers of these provinces (short names: 江苏, 广西, 内蒙古);"
            " a number whose province is unknown is not served. Not with exclude_provinces"
        ),
    ] = None
    exclude_provinces: Annotated[
        tuple[Province, ...],
        Doc("mobile_cn only: serves every number but those of these provinces. Not with provinces"),
    ] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductConfig:
    account: AccountKind
    face_value: Annotated[int, Money(), Range(1)]
    offers: Annotated[tuple[OfferConfig, ...], MinItems(1)]
    routing: Routing = Routing.PRIORITY
    max_quantity: Annotated[int, Range(1, 100)] = 100
    carrier: Annotated[
        Carrier | None,
        Doc(
            "mobile_cn only: the carrier the product recharges"
            " (cmcc 中国移动, cucc 中国联通, ctcc 中国电信, cbn 中国广电)"
        ),
    ] = None
    carrier_check: Annotated[
        CarrierCheck,
        Doc(
            "prefix: a number whose prefix belongs to another carrier is 422 carrier_mismatch;"
            " off: sell to ported numbers (携号转网) too"
        ),
    ] = CarrierCheck.PREFIX


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    store: Annotated[str, STORE_URL] = "sqlite:///var/gateway.db"
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    log: LogConfig = field(default_factory=LogConfig)
    shops: Annotated[Mapping[Annotated[str, NAME], ShopConfig], Doc("Shops by id (X-Shop-Id)")] = field(
        default_factory=lambda: MappingProxyType({})
    )
    suppliers: Mapping[Annotated[str, NAME], SupplierConfig] = field(
        default_factory=lambda: MappingProxyType({})
    )
    products: Mapping[Annotated[str, PRODUCT_NAME], ProductConfig] = field(
        default_factory=lambda: MappingProxyType({})
    )
