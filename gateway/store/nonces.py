"""Nonces seen per shop, in process memory, forgotten once their timestamps can no longer be accepted.

The memory store's only record of them; in front of a durable store's record, the fast path that
refuses a replay within the process without asking the disk.
"""

from __future__ import annotations

import heapq
import math


def _key(shop: str, nonce: str) -> str:
    # One string, not a (shop, nonce) tuple: a book holds a whole window of requests (60,000 at
    # 200/s), and the tuple would also keep both header strings alive. The length prefix keeps
    # every pair apart whatever characters they hold.
    return f"{len(shop)}:{shop}{nonce}"


class NonceBook:
    """Claims by (shop, nonce) until their expiry; each claim first drops what has expired.

    It holds about one window of claims, whatever the traffic: expiries are filed by the whole
    second they fall in, and a claim drops every second that has passed, so a purge never scans
    what is still live and costs a few bytes per claim.
    """

    __slots__ = ("_nonces", "_seconds", "_until")

    def __init__(self) -> None:
        self._nonces: dict[str, float] = {}  # key -> remembered until
        self._until: dict[int, list[str]] = {}  # whole second -> keys that expire within it
        self._seconds: list[int] = []  # min-heap of the seconds in `_until`

    def claim(self, shop: str, nonce: str, expires_at: float, now: float) -> bool:
        self._purge(now)
        key = _key(shop, nonce)
        remembered_until = self._nonces.get(key)
        if remembered_until is not None and remembered_until > now:
            return False
        self._nonces[key] = expires_at
        second = math.floor(expires_at)
        due = self._until.get(second)
        if due is None:
            due = self._until[second] = []
            heapq.heappush(self._seconds, second)
        due.append(key)
        return True

    def release(self, shop: str, nonce: str, expires_at: float) -> None:
        """Forget the claim `claim` made with `expires_at`, when it could not be recorded elsewhere."""
        key = _key(shop, nonce)
        if self._nonces.get(key) == expires_at:
            del self._nonces[key]  # its filed key finds nothing expired to remove when its second passes

    def __len__(self) -> int:
        return len(self._nonces)

    def _purge(self, now: float) -> None:
        seconds = self._seconds
        while seconds and seconds[0] + 1 <= now:
            for key in self._until.pop(heapq.heappop(seconds)):
                # A nonce claimed again after expiring is remembered until later: that claim stays.
                remembered_until = self._nonces.get(key)
                if remembered_until is not None and remembered_until <= now:
                    del self._nonces[key]
