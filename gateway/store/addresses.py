"""Where each order lives on Redis, by uid, remembered once Redis has confirmed it.

An order's key follows from its shop and order id, but a lookup by uid (every transition, every
callback) has only the uid: on Redis that is one GET of the uid index entry, then one HMGET of the
order, two round trips. The answer never changes: a uid is random and new, and once the order at a
key carries it, that entry names that key for as long as the order exists. So a key confirmed by
the order itself is kept here and the GET skipped. This is an address, not the order: the order is
still read from Redis on every lookup, so instances sharing the store never disagree about it.
"""

from __future__ import annotations

from typing import Final

# About 200 bytes each: a few megabytes, far more than the orders in flight on one instance.
DEFAULT_CAPACITY: Final = 20_000


class OrderAddresses:
    """Confirmed uid -> order key pairs, the oldest forgotten first beyond `capacity`."""

    __slots__ = ("_capacity", "_keys")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._keys: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, uid: str) -> bytes | None:
        """The key of the order with `uid`, if confirmed here before."""
        return self._keys.get(uid)

    def confirm(self, uid: str, order_key: bytes) -> None:
        """Remember that the order at `order_key` carries `uid` (its own stored document says so)."""
        if uid in self._keys:
            return
        if len(self._keys) >= self._capacity:
            # Dicts keep insertion order: the first key is the oldest. Orders are looked up mostly
            # while young, so first in, first out serves as well as recency here, at no cost per hit.
            del self._keys[next(iter(self._keys))]
        self._keys[uid] = order_key

    def forget(self, uid: str) -> None:
        """Drop `uid`: its order is gone (or was never where we thought); ask the uid index again."""
        self._keys.pop(uid, None)
