"""The contract between the simulator engine and a protocol front, and the values they exchange.

A front only reads and writes its protocol's bytes (sans-I/O); what happens to an order is the
engine's decision. Nothing here comes from `adapters`: the supplier side has its own HTTP values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final, Protocol

from gateway.simulator.ledger import LedgerEntry
from gateway.simulator.traffic import Operation


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpReply:
    """What the simulated supplier answers a request with, fully written."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """A request the simulated supplier sends (a callback), fully written: the courier only sends it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A request as the simulator received it, before any reading."""

    method: str
    path: str
    query_string: str  # raw: some protocols percent-encode non-UTF-8 bytes
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitRequest:
    upstream_order_id: str
    account: str
    sku: str | None  # None for protocols that name the product by face value only
    face_value_cents: int | None  # per unit; None when the request does not carry it
    quantity: int = 1
    notify_url: str | None = None  # for protocols that carry it; else the simulator's own


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryRequest:
    upstream_order_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceRequest:
    """A signed call for the supplier's prepaid balance (protocols/*.md, Balance)."""


class Refusal(StrEnum):
    """Why a request was answered with an error instead of being executed."""

    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    BAD_REQUEST = "bad_request"
    UNKNOWN_PRODUCT = "unknown_product"
    REFUSED = "refused"  # the refuse_rate knob: stock, channel, maintenance
    BALANCE_INSUFFICIENT = "balance_insufficient"  # the charge is beyond the prepaid balance
    DUPLICATE = "duplicate"
    THROTTLED = "throttled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    refusal: Refusal
    operation: Operation
    upstream_order_ids: tuple[str, ...] = ()  # as far as the request could be read


Reading = SubmitRequest | QueryRequest | BalanceRequest | Rejection


def reply(status: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None) -> HttpReply:
    return HttpReply(status=status, headers={"Content-Type": content_type, **(headers or {})}, body=body)


TOO_MANY_REQUESTS: Final = reply(429, "text/plain", b"Too Many Requests", {"Retry-After": "1"})
"""The throttling answer of protocols that have no throttling code of their own."""


class Front(Protocol):
    """One protocol, from the supplier's side, bound to one supplier's credentials."""

    protocol: ClassVar[str]
    routes: ClassVar[tuple[tuple[str, str], ...]]  # (HTTP method, path) pairs it answers
    supports_partial: ClassVar[bool]
    carries_notify_url: ClassVar[bool]  # False: callbacks go to the URL the simulator was given

    def read(self, request: Incoming) -> Reading: ...

    def supplier_order_id(self, sequence: int) -> str: ...

    def submit_reply(self, entry: LedgerEntry) -> HttpReply:
        """The answer to an accepted submit (the entry is still charging)."""
        ...

    def query_reply(self, query: QueryRequest, found: Mapping[str, LedgerEntry]) -> HttpReply:
        """`found` holds the charged entries among the ids asked; the rest are unknown to it."""
        ...

    def balance_reply(self, balance_cents: int) -> HttpReply:
        """The answer to a balance call: the prepaid balance, in the protocol's own shape."""
        ...

    def rejection_reply(self, rejection: Rejection) -> HttpReply: ...

    def callback(self, entry: LedgerEntry, url: str) -> HttpRequest:
        """The signed report of a final entry, addressed to `url`."""
        ...

    def forged_callbacks(self, entry: LedgerEntry, url: str) -> tuple[HttpRequest, ...]:
        """What an impostor sends about a final `entry`: reports of `entry.opposite()`.

        One signed with a wrong secret, and any the protocol's signature cannot tell from the real
        thing (juhe's sign leaves the result out).
        """
        ...

    def acknowledged(self, status: int, body: bytes) -> bool:
        """Whether the gateway's answer to a callback stops the retries."""
        ...


FrontFactory = Callable[[Mapping[str, str]], Front]
"""Builds a front from one supplier's credentials; raises `ValueError` naming any missing key."""


def guessed(secret: str) -> str:
    """The secret an impostor signs forged callbacks with: close to the real one, never equal."""
    return secret + "-guessed"


def require_credentials(protocol: str, keys: Sequence[str], credentials: Mapping[str, str]) -> None:
    """What a `FrontFactory` checks first: `ValueError` naming every one of `keys` missing or empty."""
    missing = [key for key in keys if not credentials.get(key)]
    if missing:
        raise ValueError(f"the {protocol} simulator needs credentials {', '.join(missing)}")
