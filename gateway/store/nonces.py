"""Nonces seen per shop, in process memory, forgotten once their timestamps can no longer be accepted.

The memory store's only record of them; in front of a durable store's record, the fast path that
refuses a replay within the process without asking the disk.
"""

from __future__ import annotations

import heapq


class NonceBook:
    """Claims by (shop, nonce) until their expiry; each claim first drops what has expired."""

    __slots__ = ("_expiries", "_nonces")

    def __init__(self) -> None:
        self._nonces: dict[tuple[str, str], float] = {}
        # Min-heap of (expires_at, key) so each claim purges what has expired without a full scan.
        self._expiries: list[tuple[float, tuple[str, str]]] = []

    def claim(self, shop: str, nonce: str, expires_at: float, now: float) -> bool:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expired_at, old = heapq.heappop(expiries)
            # A nonce claimed again after expiring has a newer entry; only its own one removes it.
            if self._nonces.get(old) == expired_at:
                del self._nonces[old]
        key = (shop, nonce)
        remembered_until = self._nonces.get(key)
        if remembered_until is not None and remembered_until > now:
            return False
        self._nonces[key] = expires_at
        heapq.heappush(expiries, (expires_at, key))
        return True

    def release(self, shop: str, nonce: str, expires_at: float) -> None:
        """Forget the claim `claim` made with `expires_at`, when it could not be recorded elsewhere."""
        key = (shop, nonce)
        if self._nonces.get(key) == expires_at:
            del self._nonces[key]  # its heap entry finds nothing of its own to remove when it expires

    def __len__(self) -> int:
        return len(self._nonces)
