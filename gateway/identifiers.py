"""Order uids: `G` + 26 Crockford base32 characters of a ULID-like value, so `uid + 2 digits` fits 32.

The value is 48 bits of milliseconds then 80 random bits: uids sort by creation time.
"""

from __future__ import annotations

import random
from base64 import b32encode
from typing import Final

# b32encode's alphabet, index for index, to Crockford's (ascending in ASCII, so order is kept).
_TO_CROCKFORD: Final = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_order_uid(now: float, rng: random.Random) -> str:
    value = (int(now * 1000) << 80) | rng.getrandbits(80)
    # 128 bits in 26 characters: base32 of the 16 bytes, its 2 padding bits at the end.
    return "G" + b32encode(value.to_bytes(16, "big"))[:26].translate(_TO_CROCKFORD).decode()
