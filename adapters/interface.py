"""The sans-I/O contract every supplier adapter fulfils and the value types it speaks in.

Adapters turn a charge into an HTTP request description and a supplier's bytes into typed
replies. Nothing here opens a socket, reads a clock or imports the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol


class Outcome(StrEnum):
    """What one attempt at a supplier came to (DESIGN.md, outcome rules)."""

    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    NOT_EXECUTED = "not_executed"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    """What a supplier code means; code tables (defaults and `codes:` overrides) map to these."""

    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"  # processed and declined on the supplier's side: safe to try elsewhere
    ACCOUNT_INVALID = "account_invalid"  # failed because of the account: final everywhere
    NOT_EXECUTED = "not_executed"
    THROTTLED = "throttled"  # not executed, and the supplier asks us to slow down
    # Not executed because the supplier's prepaid balance cannot pay for it: safe to try elsewhere,
    # and the gateway's idea of that balance is stale (CONTRACT.md §9: re-poll at once).
    BALANCE_INSUFFICIENT = "balance_insufficient"
    NOT_FOUND = "not_found"  # query only: the supplier has no such order
    UNKNOWN = "unknown"


class AccountKind(StrEnum):
    """The account shapes a product may take (CONTRACT.md §1)."""

    MOBILE_CN = "mobile_cn"
    QQ = "qq"
    GAME = "game"
    ANY = "any"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """An HTTP request to a supplier, fully built: the upstream client only sends it."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpReply:
    """A supplier's HTTP answer as received, before any interpretation."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundCallback:
    """A callback request from a supplier as the gateway received it."""

    method: str
    query: Mapping[str, str]
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """What the gateway answers a supplier's callback with, in the supplier's own format."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """Everything an adapter needs to build one submit: one attempt of one order at one offer."""

    upstream_order_id: str
    sku: str
    account: str
    account_kind: AccountKind
    face_value_cents: int
    quantity: int
    max_cost_cents: int
    callback_url: str
    timestamp: float  # Unix seconds, read by the caller: adapters never read a clock


@dataclass(frozen=True, slots=True, kw_only=True)
class SupplierReply:
    """One supplier answer about one upstream order, classified.

    `verdict` keeps the finer meaning (account-side failure, throttling, not found) that
    `outcome` folds into the six attempt outcomes.
    """

    upstream_order_id: str
    verdict: Verdict
    code: str | None = None
    message: str | None = None
    supplier_order_id: str | None = None
    cost_cents: int | None = None
    delivered_cents: int | None = None  # set on partial results
    retry_after_seconds: float | None = None  # set on throttling when the supplier says how long

    @property
    def outcome(self) -> Outcome:
        return VERDICT_OUTCOMES[self.verdict]

    @property
    def account_side(self) -> bool:
        return self.verdict is Verdict.ACCOUNT_INVALID

    @property
    def throttled(self) -> bool:
        """The supplier asks us to slow down (a throttled query is `unknown` but still says how long)."""
        return self.verdict is Verdict.THROTTLED or self.retry_after_seconds is not None

    @property
    def not_found(self) -> bool:
        return self.verdict is Verdict.NOT_FOUND

    @property
    def balance_insufficient(self) -> bool:
        return self.verdict is Verdict.BALANCE_INSUFFICIENT


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceReply:
    """A supplier's answer to a balance call: its prepaid credit in cents, or None with the reason.

    An unreadable, refused or unsigned answer leaves the balance unknown; the caller keeps the
    last value it read and marks it stale.
    """

    balance_cents: int | None
    code: str | None = None
    message: str | None = None  # why the balance is unknown

    @property
    def known(self) -> bool:
        return self.balance_cents is not None


VERDICT_OUTCOMES: Mapping[Verdict, Outcome] = {
    Verdict.PROCESSING: Outcome.PROCESSING,
    Verdict.SUCCEEDED: Outcome.SUCCEEDED,
    Verdict.PARTIAL: Outcome.PARTIAL,
    Verdict.FAILED: Outcome.FAILED,
    Verdict.ACCOUNT_INVALID: Outcome.FAILED,
    Verdict.NOT_EXECUTED: Outcome.NOT_EXECUTED,
    Verdict.THROTTLED: Outcome.NOT_EXECUTED,
    Verdict.BALANCE_INSUFFICIENT: Outcome.NOT_EXECUTED,
    # "Not found" only becomes "not executed" once the caller's grace period has passed.
    Verdict.NOT_FOUND: Outcome.UNKNOWN,
    Verdict.UNKNOWN: Outcome.UNKNOWN,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterSettings:
    """One supplier's settings from `gateway.yaml`, with secrets already revealed."""

    name: str
    base_url: str
    credentials: Mapping[str, str]
    codes: Mapping[str, Verdict] = field(default_factory=dict)


class AdapterError(Exception):
    """Base of the errors adapters raise."""


class InvalidSettings(AdapterError):
    """The supplier's settings do not fit the protocol (missing credential keys, bad URL)."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = tuple(problems)  # (key relative to the supplier, message)


class BadSignature(AdapterError):
    """A callback's signature does not verify: it must change nothing."""


class MalformedMessage(AdapterError):
    """A callback that cannot be read at all (wrong encoding, missing fields, garbage)."""


class SupplierAdapter(Protocol):
    """One supplier protocol, bound to one supplier's settings. Pure: builds and parses only."""

    protocol: ClassVar[str]
    credential_keys: ClassVar[tuple[str, ...]]
    max_query_batch: ClassVar[int]  # how many upstream ids one query may carry
    # Whether a callback's signature covers the result it reports. When it does not (juhe signs
    # only the ids), any callback can be replayed with its status changed, and the gateway
    # believes none of its results until a query agrees.
    callback_signs_result: ClassVar[bool]

    def build_submit(self, charge: Charge) -> HttpRequest: ...

    def parse_submit(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        """Classify a submit reply; garbage is `unknown`, never an exception."""
        ...

    def build_query(self, upstream_order_ids: Sequence[str], timestamp: float) -> HttpRequest: ...

    def parse_query(self, upstream_order_ids: Sequence[str], reply: HttpReply) -> Mapping[str, SupplierReply]:
        """Classify a query reply for each id asked; an id it cannot tell about is `unknown`."""
        ...

    def build_balance(self, timestamp: float) -> HttpRequest:
        """The balance call of the protocol (protocols/*.md, Balance); `timestamp` in Unix seconds."""
        ...

    def parse_balance(self, reply: HttpReply) -> BalanceReply:
        """Read a balance reply; garbage leaves the balance unknown, never an exception."""
        ...

    def parse_callback(self, callback: InboundCallback) -> SupplierReply:
        """Verify and read a callback; raises `BadSignature` or `MalformedMessage`."""
        ...

    def acknowledge(self) -> HttpResponse:
        """The answer that makes the supplier stop retrying a callback."""
        ...


AdapterFactory = Callable[[AdapterSettings], SupplierAdapter]
"""Builds an adapter for one supplier; raises `InvalidSettings` listing every problem."""
