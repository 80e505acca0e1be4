"""Shop authentication: HMAC-SHA256 over method, path, timestamp, nonce and body; time window; nonce guard.

Says only which part failed ("signature", "timestamp", "nonce"), never more, and spends the same work
whether or not the shop exists, so neither the answer nor its timing tells which shop ids are real.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from secrets import token_bytes
from typing import Final

from gateway.clock import Clock
from gateway.config.model import RateLimitConfig
from gateway.errors import StoreUnavailable, Unauthenticated
from gateway.shoprate import ShopRates
from gateway.store import Store, StoreError
from gateway.store.interface import PendingNonce

WINDOW_SECONDS: Final = 300.0
# Explicit ASCII classes: `\d` and `\w` would also take full-width and other Unicode digits and letters.
_SHOP_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the NAME pattern of shop ids in gateway.yaml
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")


def request_signature(
    secret: bytes, method: str, path_qs: str, timestamp: str, nonce: str, body: bytes
) -> str:
    """Lower hex HMAC-SHA256 of `METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY` (CONTRACT.md §1)."""
    message = f"{method}\n{path_qs}\n{timestamp}\n{nonce}\n".encode() + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def notification_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """Lower hex HMAC-SHA256 of `TIMESTAMP\\nBODY`, for the gateway's POSTs to shops."""
    return hmac.new(secret, timestamp.encode() + b"\n" + body, hashlib.sha256).hexdigest()


class ShopAuthenticator:
    """Checks a shop request's headers against its secret, the clock and the nonces already seen."""

    __slots__ = ("_clock", "_decoy", "_rates", "_secrets", "_store", "_window")

    def __init__(
        self,
        secrets: Mapping[str, bytes],
        store: Store,
        clock: Clock,
        window_seconds: float = WINDOW_SECONDS,
        rates: ShopRates | None = None,
    ) -> None:
        self._secrets = dict(secrets)
        self._store = store
        self._rates = rates
        self._clock = clock
        self._window = window_seconds
        # Signs for shops that do not exist. Random per process, so no request can ever match it.
        self._decoy = token_bytes(32)

    def replace_secrets(self, secrets: Mapping[str, bytes]) -> None:
        self._secrets = dict(secrets)

    def replace_rate_limits(self, limits: Mapping[str, RateLimitConfig | None]) -> None:
        if self._rates is not None:
            self._rates.reconfigure(limits)

    async def authenticate(self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes) -> str:
        """The shop id, or `Unauthenticated`; `RateLimited` over the shop's rate; `StoreUnavailable` if
        the nonce cannot be recorded."""
        shop, nonce, expires_at, now = await self._verified(method, path_qs, headers, body)
        try:
            claimed = await self._store.claim_nonce(shop, nonce, expires_at, now)
        except StoreError as exc:
            raise StoreUnavailable("the request cannot be recorded now; send it again later") from exc
        if not claimed:
            raise Unauthenticated("nonce")
        return shop

    async def authenticate_pending(
        self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, NonceRecord]:
        """`authenticate` whose nonce record may share the commit of the request's own write.

        The nonce is claimed (a replay is refused) before this returns; the caller awaits the
        returned record before it answers for anything the request did.
        """
        shop, nonce, expires_at, now = await self._verified(method, path_qs, headers, body)
        try:
            pending = await self._store.claim_nonce_pending(shop, nonce, expires_at, now)
        except StoreError as exc:
            raise StoreUnavailable("the request cannot be recorded now; send it again later") from exc
        if pending is None:
            raise Unauthenticated("nonce")
        return shop, NonceRecord(pending)

    async def _verified(
        self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, str, float, float]:
        """(shop, nonce, how long to remember it, now) of a request whose signature and rate hold."""
        shop = headers.get("X-Shop-Id", "")
        timestamp = headers.get("X-Timestamp", "")
        nonce = headers.get("X-Nonce", "")
        signature = headers.get("X-Signature", "")
        # Formats first, before any secret is looked up: what they refuse depends on the request
        # alone, so known and unknown shops get the same answers for the same mistakes.
        if _SHOP_ID.fullmatch(shop) is None or _SIGNATURE.fullmatch(signature) is None:
            raise Unauthenticated("signature")
        if _TIMESTAMP.fullmatch(timestamp) is None:
            raise Unauthenticated("timestamp")
        if _NONCE.fullmatch(nonce) is None:
            raise Unauthenticated("nonce")
        secret = self._secrets.get(shop)
        # An unknown shop costs the same HMAC and comparison as a known one, and fails the same way.
        expected = request_signature(
            self._decoy if secret is None else secret, method, path_qs, timestamp, nonce, body
        )
        if not hmac.compare_digest(expected.encode(), signature.encode()) or secret is None:
            raise Unauthenticated("signature")
        now = self._clock.now()
        sent_at = int(timestamp)
        if abs(now - sent_at) > self._window:
            raise Unauthenticated("timestamp")
        if self._rates is not None:
            # After the signature (nobody spends another shop's budget), before the nonce (a refused
            # request leaves nothing behind and may be sent again as it was).
            await self._rates.admit(shop)
        # Remembered for as long as this timestamp stays acceptable; claimed only after the
        # signature holds, so nobody can burn another shop's nonces.
        return shop, nonce, max(now, sent_at) + self._window, now


class NonceRecord:
    """A request's nonce, claimed; `recorded` returns once the claim is durable."""

    __slots__ = ("_pending",)

    def __init__(self, pending: PendingNonce) -> None:
        self._pending = pending

    async def recorded(self) -> None:
        """`StoreUnavailable` if the claim could not be recorded: the request may be sent again."""
        try:
            await self._pending.recorded()
        except StoreError as exc:
            raise StoreUnavailable("the request cannot be recorded now; send it again later") from exc
