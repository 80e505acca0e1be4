"""The Redis store's key layout: which key holds what, in which Cluster slot, and the listing entries' bytes.

Names only; no I/O. `redis_orders.lua` builds the same listing entries and must agree with `entry`.

Orders are spread over `SHARDS` shards; every key of a shard carries the shard's hash tag, so a
shard's orders and its listing index always share one Cluster slot and one script can change both:

- `{gw:<shard>:<salt>}:o:<n>:<shop>:<order_id>`: a hash, the order (`d` its document as JSON, `v`
  its version, `u` its uid, and `s`, `r`, `t`, `n`, `c`: status, reason, updated_at, notification due
  and check time, as in its listing entries). Named by (shop, order_id): its existence *is* the idempotency
  claim, so creating an order is one script on one key's slot. `<n>` is the shop's length in bytes,
  so no shop and order id can spell another pair's name.
- `{gw:<shard>:<salt>}:i`: a sorted set, every score 0, ordered by its members' bytes: the shard's
  listing index, one member per listing an order is in (see `entry`), like SQLite's composite indexes.
- `gw:u:<uid>`: a string, the name of the order's hash: the uid index, for supplier callbacks and
  lookups by uid. Its own slot; see `RedisStore.create_order` for when it is written.
- `gw:n:<n>:<shop>:<nonce>`: a string, `<expires_at> <claim token>`, expiring on its own.
- `gw:a:<n>:<shop>:<account>`: a hash, the shop guards' record of one account (`redis_accounts.lua`):
  order id -> `<state> <lease_until> <at> <expires_at> <value_cents> <product>`, expiring on its own
  some time after its last entry. One key, so its script works in whatever slot it falls.
- `{gw:blocks}:a:<account>`: a hash, an account's blocks: product glob -> the block as JSON; and
  `{gw:blocks}:i`, a set of the accounts that have one. One hash tag, so one script changes both.

Other state of the gateway shares the server under names of its own modules: `{gw:rl:<key>}` the
rate limits of suppliers and shops (`redisrate`), `gw:sw` the operator switches (`redisswitches`),
`{gw:ev:<shop>}` and `gw:ev:bell` the order events (`redisevents`).

The shard of (shop, order_id) is CRC-32 of its name's tail modulo `SHARDS`; a shard's salt is the
first one that puts its tag in the shard's own 1/`SHARDS` of the 16384 slots, so the shards sit evenly
across a Cluster's nodes. Both are part of the stored layout: changing either orphans stored orders.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

SHARDS: Final = 64

# The listing entries of an order, as `redis_orders.lua` writes them (NUL = b"\0"):
#   all orders        a NUL <t> NUL <tail>
#   by status         s NUL <status> NUL <t> NUL <tail>
#   by reason         r NUL <reason> NUL <t> NUL <tail>                  (only with a reason)
#   status and reason x NUL <status> NUL <reason> NUL <t> NUL <tail>     (only with a reason)
#   notification due  n NUL <due> NUL <tail>                             (only while one is due)
#   check due         c NUL <check> NUL <tail>                           (only while processing)
#   created           k NUL <created> NUL <tail>                         (never moves)
# where <t>, <due>, <check> and <created> are `sortable` times and <tail> is `<uid> NUL <order key tail>`.
# Sorted by bytes, one listing's entries run in (time, uid) order, as SQLite's `ORDER BY updated_at, uid`.
ALL: Final = b"a\0"
DUE: Final = b"n\0"
CHECKS: Final = b"c\0"
CREATED: Final = b"k\0"
_SORTABLE_LENGTH: Final = 16


def _spread_tags() -> tuple[bytes, ...]:
    tags = []
    for shard in range(SHARDS):
        low = shard * REDIS_CLUSTER_HASH_SLOTS // SHARDS
        high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // SHARDS
        salt = 0
        while not low <= key_slot(b"gw:%d:%d" % (shard, salt)) < high:
            salt += 1
        tags.append(b"{gw:%d:%d}" % (shard, salt))
    return tuple(tags)


SHARD_TAGS: Final = _spread_tags()
INDEX_KEYS: Final = tuple(tag + b":i" for tag in SHARD_TAGS)
ORDER_PREFIXES: Final = tuple(tag + b":o:" for tag in SHARD_TAGS)


def sortable(seconds: float) -> bytes:
    """`seconds` as 16 hex digits whose byte order is the numbers' order (IEEE 754 bits, sign-adjusted)."""
    bits: int = struct.unpack(">Q", struct.pack(">d", seconds))[0]
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return b"%016x" % bits


def _tail(first: str, second: str) -> bytes:
    head = first.encode()
    return b"%d:%s:%s" % (len(head), head, second.encode())


def _shard(key_tail: bytes) -> int:
    return zlib.crc32(key_tail) % SHARDS


def _order_key(key_tail: bytes) -> bytes:
    return ORDER_PREFIXES[_shard(key_tail)] + key_tail


@dataclass(frozen=True, slots=True)
class OrderKeys:
    """The keys one order's scripts touch; `order` and `index` always share a slot."""

    order: bytes
    index: bytes
    uid: bytes
    entry_tail: bytes  # what ends every listing entry of the order: `<uid> NUL <order key tail>`


def order_keys(shop: str, order_id: str, uid: str) -> OrderKeys:
    key_tail = _tail(shop, order_id)
    shard = _shard(key_tail)
    return OrderKeys(
        order=SHARD_TAGS[shard] + b":o:" + key_tail,
        index=INDEX_KEYS[shard],
        uid=uid_key(uid),
        entry_tail=uid.encode() + b"\0" + key_tail,
    )


def order_key(shop: str, order_id: str) -> bytes:
    return _order_key(_tail(shop, order_id))


def uid_key(uid: str) -> bytes:
    return b"gw:u:" + uid.encode()


def nonce_key(shop: str, nonce: str) -> bytes:
    return b"gw:n:" + _tail(shop, nonce)


def account_key(shop: str, account: str) -> bytes:
    return b"gw:a:" + _tail(shop, account)


BLOCKS_INDEX: Final = b"{gw:blocks}:i"


def block_key(account: str) -> bytes:
    # The whole rest is the account: nothing follows it that it could be confused with.
    return b"{gw:blocks}:a:" + account.encode()


def by_status(status: str) -> bytes:
    return b"s\0" + status.encode() + b"\0"


def by_reason(reason: str) -> bytes:
    return b"r\0" + reason.encode() + b"\0"


def by_status_and_reason(status: str, reason: str) -> bytes:
    return b"x\0" + status.encode() + b"\0" + reason.encode() + b"\0"


def entry_order_key(listing: bytes, entry: bytes) -> bytes:
    """The order key an entry of `listing` (one of the prefixes above) points at."""
    _, _, key_tail = entry[len(listing) + _SORTABLE_LENGTH + 1 :].partition(b"\0")
    return _order_key(key_tail)
