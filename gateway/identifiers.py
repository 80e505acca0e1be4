"""Order uids: `G` + a ULID (time-ordered, 26 Crockford base32 characters), so `uid + 2 digits` fits 32."""

from __future__ import annotations

import random
from typing import Final

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_order_uid(now: float, rng: random.Random) -> str:
    """48 bits of milliseconds then 80 random bits; sortable by creation time."""
    value = (int(now * 1000) << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "G" + "".join(reversed(chars))
