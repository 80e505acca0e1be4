"""Shop authentication: HMAC-SHA256 over method, path, timestamp, nonce and body; time window; nonce guard.

Says only which part failed ("signature", "timestamp", "nonce"), never more.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final

from gateway.clock import Clock
from gateway.errors import Unauthenticated
from gateway.store import Store

WINDOW_SECONDS: Final = 300.0
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")
_TIMESTAMP: Final = re.compile(r"\d{1,12}")


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

    __slots__ = ("_clock", "_secrets", "_store", "_window")

    def __init__(
        self,
        secrets: Mapping[str, bytes],
        store: Store,
        clock: Clock,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self._secrets = dict(secrets)
        self._store = store
        self._clock = clock
        self._window = window_seconds

    def replace_secrets(self, secrets: Mapping[str, bytes]) -> None:
        self._secrets = dict(secrets)

    async def authenticate(self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes) -> str:
        """The shop id, or `Unauthenticated`."""
        shop = headers.get("X-Shop-Id", "")
        timestamp = headers.get("X-Timestamp", "")
        nonce = headers.get("X-Nonce", "")
        signature = headers.get("X-Signature", "")
        secret = self._secrets.get(shop)
        # An unknown shop and a wrong signature look the same from outside.
        if secret is None or not signature:
            raise Unauthenticated("signature")
        if _NONCE.fullmatch(nonce) is None:
            raise Unauthenticated("nonce")
        if _TIMESTAMP.fullmatch(timestamp) is None:
            raise Unauthenticated("timestamp")
        expected = request_signature(secret, method, path_qs, timestamp, nonce, body)
        if not hmac.compare_digest(expected, signature):
            raise Unauthenticated("signature")
        now = self._clock.now()
        sent_at = int(timestamp)
        if abs(now - sent_at) > self._window:
            raise Unauthenticated("timestamp")
        # Remembered for as long as this timestamp stays acceptable; claimed only after the
        # signature holds, so nobody can burn another shop's nonces.
        if not await self._store.claim_nonce(shop, nonce, max(now, sent_at) + self._window, now):
            raise Unauthenticated("nonce")
        return shop
