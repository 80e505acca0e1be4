"""Stream tokens: short-lived credentials that let a shop's browser open the order WebSocket (CONTRACT.md §8).

Minted for a signed shop request, verified by any instance from the token alone (no store lookup).
Pure: no HTTP, no I/O; the shop's secret and the clock are given.

A token is `<payload>.<mac>`, both unpadded base64url: the payload is the JSON `{"s": shop, "o": order_id
or null, "e": expiry in Unix milliseconds}`, the MAC is HMAC-SHA256 over the payload text with a key
derived from the shop's secret under its own label, `HMAC-SHA256(secret, TOKEN_KEY_LABEL)`. Why that key:

- Every instance already holds every shop's secret (gateway.yaml), so a token minted on one verifies on
  all without a shared store or a new gateway-wide secret to distribute and rotate.
- A token only ever speaks for the shop whose secret made it: one shop cannot mint for another, a
  leaked shop secret exposes that shop alone, and rotating a shop's secret revokes its outstanding tokens.
- The label separates the two uses of the secret. A request signature is an HMAC under the secret itself
  over `METHOD\\nPATH\\n...`; a token's MAC is under the derived key: neither can be computed from, or pass
  for, the other, and a token is accepted only by `GET /v1/orders/ws`, never as `X-Signature`.

The shop knows its secret, so it could mint tokens itself: verification therefore also refuses any
expiry further away than `MAX_TTL_SECONDS`, whoever made the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from secrets import token_bytes
from typing import Final

import orjson

from gateway.clock import Clock
from gateway.errors import InvalidRequest, Unauthenticated
from gateway.intake import ORDER_ID
from gateway.jsonbody import json_object, unknown_fields

TOKEN_KEY_LABEL: Final = b"supplier-gateway/stream-token/v1"
MIN_TTL_SECONDS: Final = 1
MAX_TTL_SECONDS: Final = 3600
DEFAULT_TTL_SECONDS: Final = 300
# Room for the minting instance's clock being ahead of the verifying one's.
CLOCK_SKEW_SECONDS: Final = 5
# Far above any real token (about 200 characters): longer input is refused before it is decoded.
MAX_TOKEN_CHARS: Final = 512
FIELDS: Final = frozenset({"order_id", "ttl_seconds"})
_SHOP_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as in auth.py: the shop ids gateway.yaml allows
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")

SecretOf = Callable[[str], bytes | None]
"""A shop's current secret, None for a shop that does not exist (read at each call: reloads change it)."""


@dataclass(frozen=True, slots=True)
class StreamGrant:
    """What a token lets its holder follow: one shop's events, or only one of its orders', until expiry."""

    shop: str
    order_id: str | None
    expires_ms: int  # Unix milliseconds

    @property
    def expires_at(self) -> float:
        """Unix seconds."""
        return self.expires_ms / 1000


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The body of `POST /v1/stream-tokens`, validated."""

    order_id: str | None
    ttl_seconds: int


def token_key(secret: bytes) -> bytes:
    """The key a shop's tokens are signed with: never the secret itself (see the module docstring)."""
    return hmac.new(secret, TOKEN_KEY_LABEL, hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    if _BASE64URL.fullmatch(text) is None:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _mac(key: bytes, payload: str) -> str:
    return _b64encode(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def encode_token(secret: bytes, grant: StreamGrant) -> str:
    """The token for `grant`, signed with `secret`'s token key."""
    payload = _b64encode(orjson.dumps({"s": grant.shop, "o": grant.order_id, "e": grant.expires_ms}))
    return f"{payload}.{_mac(token_key(secret), payload)}"


def _grant_of(payload: bytes) -> StreamGrant | None:
    """The grant a payload claims, None unless it has exactly the fields of one, well formed."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.keys() != {"s", "o", "e"}:
        return None
    shop, order_id, expires_ms = doc["s"], doc["o"], doc["e"]
    if not isinstance(shop, str) or _SHOP_ID.fullmatch(shop) is None:
        return None
    if order_id is not None and (not isinstance(order_id, str) or ORDER_ID.fullmatch(order_id) is None):
        return None
    if not isinstance(expires_ms, int) or isinstance(expires_ms, bool) or expires_ms < 0:
        return None
    return StreamGrant(shop, order_id, expires_ms)


class StreamTokens:
    """Mints and verifies the stream tokens of every shop, with the shops' current secrets and a clock."""

    __slots__ = ("_clock", "_decoy", "_secret_of")

    def __init__(self, secret_of: SecretOf, clock: Clock) -> None:
        self._secret_of = secret_of
        self._clock = clock
        # Verifies the tokens of shops that do not exist: random, so none ever matches it.
        self._decoy = token_bytes(32)

    def mint(self, shop: str, request: TokenRequest) -> tuple[str, StreamGrant]:
        """A token for an authenticated `shop`, and what it grants."""
        secret = self._secret_of(shop)
        if secret is None:
            raise Unauthenticated("signature")  # the shop was removed since its request was checked
        expires_ms = int(self._clock.now() * 1000) + request.ttl_seconds * 1000
        grant = StreamGrant(shop, request.order_id, expires_ms)
        return encode_token(secret, grant), grant

    def verify(self, token: str) -> StreamGrant:
        """The grant of a genuine, unexpired token; `Unauthenticated` otherwise.

        Says "token expired" only for a token whose MAC holds: anything else is just "token".
        """
        payload, dot, mac = token.partition(".")
        raw = _b64decode(payload) if dot and len(token) <= MAX_TOKEN_CHARS else None
        grant = _grant_of(raw) if raw is not None else None
        if grant is None:
            raise Unauthenticated("token")
        secret = self._secret_of(grant.shop)
        # An unknown shop costs the same HMACs as a known one and fails the same way.
        expected = _mac(token_key(self._decoy if secret is None else secret), payload).encode("ascii")
        if not hmac.compare_digest(expected, mac.encode("ascii", "replace")) or secret is None:
            raise Unauthenticated("token")
        now_ms = int(self._clock.now() * 1000)
        if grant.expires_ms <= now_ms:
            raise Unauthenticated("token expired")
        if grant.expires_ms > now_ms + (MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS) * 1000:
            raise Unauthenticated("token")
        return grant


def read_token_request(body: bytes) -> TokenRequest:
    """The body of `POST /v1/stream-tokens` (none: every default), or `InvalidRequest` with every problem.

    Only a body of no bytes at all is no body: anything else must be a JSON object (whitespace is not one).
    """
    doc = json_object(body) if body else {}
    problems = unknown_fields(doc, FIELDS)
    order_id = doc.get("order_id")
    if order_id is not None and (not isinstance(order_id, str) or ORDER_ID.fullmatch(order_id) is None):
        problems.append({"field": "order_id", "message": "must be 1 to 64 of letters, digits, _ . and -"})
    ttl_seconds = doc.get("ttl_seconds", DEFAULT_TTL_SECONDS)
    if (
        not isinstance(ttl_seconds, int)
        or isinstance(ttl_seconds, bool)
        or not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS
    ):
        message = f"must be an integer from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}"
        problems.append({"field": "ttl_seconds", "message": message})
    if problems:
        raise InvalidRequest("invalid stream token request", details=problems)
    return TokenRequest(order_id, ttl_seconds)
