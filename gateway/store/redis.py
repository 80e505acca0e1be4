"""Redis store: orders, idempotency, listings and nonces on one Redis server or a Redis Cluster.

Every multi-key change is one Lua script in one slot (`redis_orders.lua`); redis-py's errors become
`StoreError` here and nowhere else, never quoting the URL's password; nothing is kept per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from itertools import islice
from typing import Any, Final

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import BusyLoadingError, RedisClusterException, RedisError
from redis.typing import EncodableT

from gateway.order import Order, OrderStatus, Reason, from_document, order_uid_of, to_document
from gateway.store import redis_keys as keys
from gateway.store.addresses import OrderAddresses
from gateway.store.blocks import AccountBlock, block_document, block_from, listed
from gateway.store.interface import RECORDED, PendingNonce, StaleOrder, StoreError
from gateway.store.redis_endpoint import Client, RedisEndpoint
from gateway.store.reservations import (
    AccountClaim,
    AccountEntry,
    AccountVerdict,
    EntryState,
    Refusal,
    Release,
    newest_first,
)


def _script(name: str) -> str:
    return resources.files("gateway.store").joinpath(name).read_text(encoding="utf-8")


ORDERS_SCRIPT: Final = _script("redis_orders.lua")
NONCES_SCRIPT: Final = _script("redis_nonces.lua")
ACCOUNTS_SCRIPT: Final = _script("redis_accounts.lua")
BLOCKS_SCRIPT: Final = _script("redis_blocks.lua")
_CREATE: Final = b"create"
_SAVE: Final = b"save"
_CLAIM: Final = b"claim"
# Redis keeps a nonce this long after its expiry on the caller's clock: the stored expiry decides,
# this only has to outlast the skew between the gateway instances' clocks and Redis's own.
NONCE_GRACE_SECONDS: Final = 60.0
# Likewise for an account's guard record: Redis drops the key this long after its last entry expires.
ACCOUNT_GRACE_SECONDS: Final = 60.0
# Orders read per pipeline when a listing fetches their documents.
FETCH_BATCH: Final = 500
_FOREIGN_ERRORS: Final = (RedisError, RedisClusterException, OSError)
# How long `open` waits for a Redis that is still loading its data set (answering LOADING).
LOADING_WAIT_SECONDS: Final = 120.0
LOADING_POLL_SECONDS: Final = 0.25


class RedisStore:
    """The `Store` that several gateway instances share: one Redis server (`redis://`, `rediss://`) or a
    Redis Cluster (`redis+cluster://`), in the key layout of `redis_keys`.

    Each create and save is one EVALSHA on the order's shard, which holds the order, its idempotency
    claim and the shard's listing index together, so they never disagree. The only key outside an
    order's shard is its uid index entry (`gw:u:<uid>`, read by lookups by uid and upstream id):

    - On a single server the create script writes it too: one round trip, all atomic.
    - On a Cluster it lies in another slot, so `create_order` claims it first (`SET NX GET`), then runs
      the create script, then deletes the claim again if another order already held (shop, order_id).
      A crash between those steps leaves at most an entry naming an order that does not carry that
      uid; every read checks the order's own uid, so it reads as absent. An order is never stored
      without its entry.

    There is no index across shards to fall behind: a listing reads every shard's index (one
    pipeline, rarely two, see `_first_entries`), merges them, then fetches the orders (another
    pipeline); an order saved in between is checked again against the listing's condition.

    A lost reply is safe to send again (redis-py retries a broken connection): a create of the same
    uid and a save of the same bytes on the same version answer as the first time, and a nonce claim
    carries a random token of its own. Needs Redis 7.0 or later (`SET NX GET`, `ZRANGE BYLEX REV`).
    """

    __slots__ = (
        "_accounts",
        "_addresses",
        "_blocks",
        "_client",
        "_closed",
        "_endpoint",
        "_nonces",
        "_orders",
        "_permits",
    )

    def __init__(self, client: Client, endpoint: RedisEndpoint) -> None:
        """Wrap a client that `open` has made; `open` loads the scripts and checks Redis answers."""
        self._client = client
        self._endpoint = endpoint
        self._closed = False
        # As many commands in flight as the pool has connections (per node, on a Cluster, whose pool
        # would fail rather than wait): a burst queues here instead of failing.
        self._permits = asyncio.Semaphore(endpoint.pool_size)
        # The SHA is computed once here; redis-py's Script loads the script again on NOSCRIPT (a
        # restarted or failed-over server), on a Cluster into every primary.
        self._orders = client.register_script(ORDERS_SCRIPT)
        self._nonces = client.register_script(NONCES_SCRIPT)
        self._accounts = client.register_script(ACCOUNTS_SCRIPT)
        self._blocks = client.register_script(BLOCKS_SCRIPT)
        self._addresses = OrderAddresses()

    @classmethod
    async def open(cls, url: str, *, loading_wait: float = LOADING_WAIT_SECONDS) -> RedisStore:
        """Connect to the store at `url`: `ValueError` for a malformed URL, `StoreError` if Redis fails."""
        endpoint = RedisEndpoint.parse(url)
        store = cls(endpoint.client(), endpoint)
        try:
            for waited in itertools.count():
                try:
                    async with store._boundary("start") as client:
                        if isinstance(client, RedisCluster):
                            await client.initialize()
                        # Loaded now, so no order waits for a NOSCRIPT round trip.
                        for script in (ORDERS_SCRIPT, NONCES_SCRIPT, ACCOUNTS_SCRIPT, BLOCKS_SCRIPT):
                            await client.script_load(script)
                        # SCRIPT LOAD is served while Redis is still loading its data; PING is not.
                        if isinstance(client, RedisCluster):
                            await client.ping(target_nodes=RedisCluster.PRIMARIES)
                        else:
                            await client.ping()
                    break
                except StoreError as exc:
                    # A Redis reading its data back after a restart answers LOADING: it will serve
                    # soon, and an instance started alongside it (compose, a host reboot) waits.
                    if (
                        not isinstance(exc.__cause__, BusyLoadingError)
                        or waited * LOADING_POLL_SECONDS >= loading_wait
                    ):
                        raise
                    await asyncio.sleep(LOADING_POLL_SECONDS)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def permits(self) -> asyncio.Semaphore:
        """The budget of commands in flight on `client`: whoever shares the client shares it too."""
        return self._permits

    @property
    def client(self) -> Client:
        """The redis-py client, for other Redis state of the gateway (the rate limit) to share its pool."""
        return self._client

    async def create_order(self, order: Order) -> tuple[Order, bool]:
        """Insert `order` unless (shop, order_id) exists; see the class for the uid index on a Cluster."""
        at = keys.order_keys(order.shop, order.order_id, order.uid)
        args: list[EncodableT] = [_CREATE, *_fields(order, at)]
        async with self._boundary("create order") as client:
            if isinstance(client, RedisCluster):
                owner = await client.set(at.uid, at.order, nx=True, get=True)
                if owner is not None and owner != at.order:
                    reply: list[Any] = [-1]
                else:
                    reply = await self._orders(keys=[at.order, at.index], args=args)
                    if reply[0] == 0:
                        # The claim names an order that carries another uid: harmless, but dropped.
                        await client.delete(at.uid)
            else:
                reply = await self._orders(keys=[at.order, at.index, at.uid], args=args)
        match reply[0]:
            case 1:
                stored, created = order, True
            case 2:
                stored, created = _order(reply[1]), True
            case 0:
                stored, created = _order(reply[1]), False
            case _:
                raise StoreError(f"order uid {order.uid} already belongs to another order")
        self._addresses.confirm(stored.uid, at.order)
        return stored, created

    async def save_order(self, order: Order) -> Order:
        saved = replace(order, version=order.version + 1)
        at = keys.order_keys(order.shop, order.order_id, order.uid)
        args: list[EncodableT] = [_SAVE, *_fields(saved, at, version=order.version), saved.version]
        async with self._boundary("save order"):
            reply = await self._orders(keys=[at.order, at.index], args=args)
        match reply[0]:
            case 1:
                return saved
            case 0:
                raise StaleOrder(order.uid, order.version, int(reply[1]))
            case _:
                raise StoreError(f"order {order.uid} was never created")

    async def get_order(self, shop: str, order_id: str) -> Order | None:
        async with self._boundary("read order") as client:
            document = await client.hget(keys.order_key(shop, order_id), "d")
        return None if document is None else _order(document)

    async def get_order_by_uid(self, uid: str) -> Order | None:
        """One round trip when this instance has seen the order's key before, two otherwise."""
        expected = uid.encode()
        async with self._boundary("read order") as client:
            order_key = self._addresses.get(uid)
            if order_key is not None:
                held_uid, document = await client.hmget(order_key, ["u", "d"])
                if document is not None and held_uid == expected:
                    return _order(document)
                self._addresses.forget(uid)  # not there any more: the uid index has the last word
            indexed = await client.get(keys.uid_key(uid))
            if indexed is None:
                return None
            held_uid, document = await client.hmget(indexed, ["u", "d"])
        # An index entry left by an interrupted or duplicate create names an order with another uid.
        if document is None or held_uid != expected:
            return None
        self._addresses.confirm(uid, indexed.encode() if isinstance(indexed, str) else indexed)
        return _order(document)

    async def get_order_by_upstream_id(self, upstream_order_id: str) -> Order | None:
        order = await self.get_order_by_uid(order_uid_of(upstream_order_id))
        if order is None or all(a.upstream_order_id != upstream_order_id for a in order.attempts):
            return None
        return order

    async def list_orders(
        self,
        *,
        status: OrderStatus | None = None,
        reason: Reason | None = None,
        limit: int = 100,
    ) -> Sequence[Order]:
        if status is not None and reason is not None:
            listing = keys.by_status_and_reason(status.value, reason.value)
        elif status is not None:
            listing = keys.by_status(status.value)
        elif reason is not None:
            listing = keys.by_reason(reason.value)
        else:
            listing = keys.ALL

        def still_listed(order: Order) -> bool:
            return (status is None or order.status is status) and (reason is None or order.reason is reason)

        return await self._listing(listing, limit, still_listed, newest_first=True)

    async def processing_orders(self, limit: int = 1000) -> Sequence[Order]:
        return await self._listing(
            keys.by_status(OrderStatus.PROCESSING.value),
            limit,
            lambda order: order.status is OrderStatus.PROCESSING,
        )

    async def count_processing(self) -> Mapping[Reason, int]:
        """One pipeline of ZLEXCOUNTs: every shard's entries for every reason of a processing order."""
        prefixes = [
            (reason, keys.by_status_and_reason(OrderStatus.PROCESSING.value, reason.value))
            for reason in Reason
        ]
        async with self._boundary("count orders") as client:
            counts = client.pipeline(transaction=False)
            for _, prefix in prefixes:
                for index in keys.INDEX_KEYS:
                    counts.zlexcount(index, b"[" + prefix, b"(" + prefix + b"\xff")
            replies: list[int] = await counts.execute()
        shards = keys.SHARDS
        return {reason: sum(replies[i * shards : (i + 1) * shards]) for i, (reason, _) in enumerate(prefixes)}

    async def orders_created(
        self,
        since: float,
        until: float,
        *,
        after: tuple[float, str] | None = None,
        limit: int = 1000,
    ) -> Sequence[Order]:
        """The creation listing (`k NUL <created> NUL <uid> ...`) from just past `after` to `until`.

        An order stored before that listing existed joins it at its next save; one that is never saved
        again (final before the upgrade) is not listed.
        """
        created, uid = (since, "") if after is None else after
        # \1 sorts after the NUL that ends `uid` in its own entries and before any longer uid.
        start = keys.CREATED + keys.sortable(created) + b"\0" + uid.encode() + b"\1"
        upto = keys.CREATED + keys.sortable(until)

        def still_listed(order: Order) -> bool:
            return since <= order.created_at < until

        return await self._listing(keys.CREATED, limit, still_listed, since=start, upto=upto)

    async def count_notifications_pending(self) -> int:
        """One pipeline of ZLEXCOUNTs: every shard's notification-due entries."""
        async with self._boundary("count notifications") as client:
            counts = client.pipeline(transaction=False)
            for index in keys.INDEX_KEYS:
                counts.zlexcount(index, b"[" + keys.DUE, b"(" + keys.DUE + b"\xff")
            replies: list[int] = await counts.execute()
        return sum(replies)

    async def due_notifications(self, now: float, limit: int = 100) -> Sequence[Order]:
        def still_due(order: Order) -> bool:
            due = order.notification.due_at if order.notification is not None else None
            return due is not None and due <= now

        # Entries are `n NUL <due> NUL <uid>...`: everything below `n NUL <now> \x01` is due by `now`.
        return await self._listing(keys.DUE, limit, still_due, upto=keys.DUE + keys.sortable(now) + b"\x01")

    async def claim_checks(self, now: float, until: float, limit: int = 1000) -> Sequence[Order]:
        """Each shard claims its share of `limit` in one script, every shard at once.

        Soonest due first within a shard; across shards only roughly, which is all a sweep needs.
        Everything claimed is returned, up to a share per shard (a little over `limit`): an order
        claimed and not returned would wait out its claim for nothing.
        """
        if limit <= 0:
            return []
        share = -(-limit // keys.SHARDS)
        upto = keys.CHECKS + keys.sortable(now) + b"\x01"
        claimed_until = keys.sortable(until)

        async def claim(shard: int) -> list[bytes]:
            async with self._boundary("claim checks"):
                args: list[EncodableT] = [_CLAIM, keys.ORDER_PREFIXES[shard], upto, claimed_until, share]
                documents: list[bytes] = await self._orders(keys=[keys.INDEX_KEYS[shard]], args=args)
                return documents

        claimed = await asyncio.gather(*(claim(shard) for shard in range(keys.SHARDS)))
        orders = [_order(document) for documents in claimed for document in documents]
        return sorted(orders, key=lambda order: order.check_at or 0.0)

    async def claim_nonce(self, shop: str, nonce: str, expires_at: float, now: float) -> bool:
        """Durable as far as the Redis server keeps its data (its own persistence settings)."""
        keep_ms = math.ceil((max(expires_at - now, 0.0) + NONCE_GRACE_SECONDS) * 1000)
        token = os.urandom(8).hex()
        async with self._boundary("claim nonce"):
            claimed = await self._nonces(
                keys=[keys.nonce_key(shop, nonce)], args=[repr(expires_at), repr(now), token, keep_ms]
            )
        return bool(claimed)

    async def claim_nonce_pending(
        self, shop: str, nonce: str, expires_at: float, now: float
    ) -> PendingNonce | None:
        # Every claim here is recorded as it is decided: there is nothing to wait for.
        return RECORDED if await self.claim_nonce(shop, nonce, expires_at, now) else None

    async def reserve_account(self, claim: AccountClaim) -> AccountVerdict:
        """One script on the record's key (`redis_accounts.lua`): read, judged and written at once."""
        entry = claim.entry
        args: list[EncodableT] = [
            b"reserve",
            entry.order_id,
            entry.product,
            entry.value_cents,
            repr(entry.at),
            repr(entry.lease_until),
            repr(entry.expires_at),
            b"" if claim.duplicate_since is None else repr(claim.duplicate_since),
            repr(claim.day_start),
            b"" if claim.max_orders is None else claim.max_orders,
            b"" if claim.max_value_cents is None else claim.max_value_cents,
            _keep_ms(entry.expires_at, claim.now),
        ]
        async with self._boundary("reserve account"):
            reply: list[bytes] = await self._accounts(
                keys=[keys.account_key(claim.shop, claim.account)], args=args
            )
        if reply[0] == b"reserved":
            return AccountVerdict()
        blocking = [_account_entry(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]
        return AccountVerdict(Refusal(reply[0].decode()), newest_first(blocking))

    async def confirm_account_order(self, shop: str, account: str, entry: AccountEntry) -> None:
        args: list[EncodableT] = [
            b"confirm",
            entry.order_id,
            entry.product,
            entry.value_cents,
            repr(entry.at),
            repr(entry.expires_at),
            _keep_ms(entry.expires_at, entry.at),
        ]
        async with self._boundary("confirm account order"):
            await self._accounts(keys=[keys.account_key(shop, account)], args=args)

    async def release_account_order(
        self, shop: str, account: str, order_id: str, how: Release, now: float
    ) -> bool:
        args: list[EncodableT] = [b"release", order_id, how.value, repr(now)]
        async with self._boundary("release account order"):
            changed = await self._accounts(keys=[keys.account_key(shop, account)], args=args)
        return bool(changed)

    async def block_account(self, block: AccountBlock) -> None:
        document = orjson.dumps(block_document(block))
        args: list[EncodableT] = [b"block", block.account, block.product, document]
        async with self._boundary("block account"):
            await self._blocks(keys=[keys.BLOCKS_INDEX, keys.block_key(block.account)], args=args)

    async def unblock_account(self, account: str) -> Sequence[AccountBlock]:
        args: list[EncodableT] = [b"unblock", account]
        async with self._boundary("unblock account"):
            removed: list[bytes] = await self._blocks(
                keys=[keys.BLOCKS_INDEX, keys.block_key(account)], args=args
            )
        return listed([_block(account, removed[i], removed[i + 1]) for i in range(0, len(removed), 2)])

    async def account_blocks(self, now: float, account: str | None = None) -> Sequence[AccountBlock]:
        """One account's: one HGETALL, on every order. All: the index, then every account's in a pipeline.

        The blocks share one slot (so a block and its index entry change together); at the gateway's
        order rates that one node's extra read per order is small beside the orders' own traffic.
        """
        async with self._boundary("read blocked accounts") as client:
            if account is not None:
                accounts = [account]
            else:
                members = await client.smembers(keys.BLOCKS_INDEX)
                accounts = [name.decode() if isinstance(name, bytes) else name for name in members]
            fetch = client.pipeline(transaction=False)
            for name in accounts:
                fetch.hgetall(keys.block_key(name))
            held: list[dict[bytes, bytes]] = await fetch.execute() if accounts else []
        found = [
            _block(name, product, document)
            for name, blocks in zip(accounts, held, strict=True)
            for product, document in blocks.items()
        ]
        return listed([block for block in found if block.active(now)])

    async def ping(self) -> None:
        async with self._boundary("ping") as client:
            if isinstance(client, RedisCluster):
                # Every primary: an order lives on whichever holds its shard.
                await client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await client.ping()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            # Closing sockets to a Redis that is gone fails harmlessly: nothing is left to release.
            with contextlib.suppress(*_FOREIGN_ERRORS):
                await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisStore({self._endpoint.redacted!r})"

    async def _listing(
        self,
        listing: bytes,
        limit: int,
        still_listed: Callable[[Order], bool],
        *,
        newest_first: bool = False,
        upto: bytes | None = None,
        since: bytes | None = None,
    ) -> list[Order]:
        """The first `limit` entries of `listing` (from `since`, before `upto`) over every shard, as orders
        that still belong in it."""
        async with self._boundary("list orders") as client:
            if limit <= 0:
                return []
            entries = await _first_entries(client, listing, limit, newest_first, upto, since)
            documents: list[bytes | str | None] = []
            for start in range(0, len(entries), FETCH_BATCH):
                fetch = client.pipeline(transaction=False)
                for entry in entries[start : start + FETCH_BATCH]:
                    fetch.hget(keys.entry_order_key(listing, entry), "d")
                documents.extend(await fetch.execute())
        found = (_order(document) for document in documents if document is not None)
        return [order for order in found if still_listed(order)]

    @asynccontextmanager
    async def _boundary(self, doing: str) -> AsyncIterator[Client]:
        """Where redis-py's errors become `StoreError`, quoting the URL and the error without the password."""
        if self._closed:
            raise StoreError(f"Redis store {self._endpoint.redacted} is closed")
        async with self._permits:
            try:
                yield self._client
            except _FOREIGN_ERRORS as exc:
                detail = f"{type(exc).__name__}: {exc}"
                shown = self._endpoint.scrub(detail)
                error = StoreError(f"Redis store {self._endpoint.redacted}: {doing} failed: {shown}")
                # Chained only when the cause's own text cannot show the password.
                raise error from (exc if shown == detail else None)


async def _first_entries(
    client: Client,
    listing: bytes,
    limit: int,
    newest_first: bool,
    upto: bytes | None,
    since: bytes | None = None,
) -> list[bytes]:
    """The first `limit` entries of `listing` in all shards' indexes together, in the listing's order.

    Orders spread evenly over the shards, so a little over `limit / SHARDS` entries from each shard
    usually settle the listing in one pipeline. A shard that filled its share and whose last entry
    still lies ahead of the listing's last is asked again, for up to `limit` more: then it has given
    `limit` entries or all it has, so two rounds always suffice.
    """
    low, high = b"[" + (since or listing), b"(" + (upto or listing + b"\xff")
    bounds = dict.fromkeys(range(keys.SHARDS), (low, high))
    taken: list[list[bytes]] = [[] for _ in range(keys.SHARDS)]
    asking = list(range(keys.SHARDS))
    count = min(limit, 2 * -(-limit // keys.SHARDS) + 4)
    while True:
        ranges = client.pipeline(transaction=False)
        for shard in asking:
            start, end = bounds[shard]
            if newest_first:
                ranges.zrange(keys.INDEX_KEYS[shard], end, start, desc=True, bylex=True, offset=0, num=count)
            else:
                ranges.zrange(keys.INDEX_KEYS[shard], start, end, bylex=True, offset=0, num=count)
        replies: list[list[bytes]] = await ranges.execute()
        full = []
        for shard, reply in zip(asking, replies, strict=True):
            taken[shard].extend(reply)
            if len(reply) == count:
                full.append(shard)
        # Each shard's entries come sorted; merged, they are in the order of one big index.
        listed = list(islice(heapq.merge(*taken, reverse=newest_first), limit))
        if len(listed) == limit:
            last = listed[-1]
            full = [s for s in full if (taken[s][-1] > last if newest_first else taken[s][-1] < last)]
        if not full:
            return listed
        for shard in full:
            after = b"(" + taken[shard][-1]
            bounds[shard] = (low, after) if newest_first else (after, high)
        asking, count = full, limit


def _fields(order: Order, at: keys.OrderKeys, *, version: int | None = None) -> list[EncodableT]:
    """ARGV[2] to ARGV[11] of `redis_orders.lua` for `order`."""
    due = order.notification.due_at if order.notification is not None else None
    check = None if order.status.final else order.check_time
    return [
        order.uid,
        order.version if version is None else version,
        orjson.dumps(to_document(order)),
        order.status.value,
        order.reason.value if order.reason is not None else b"",
        keys.sortable(order.updated_at),
        b"" if due is None else keys.sortable(due),
        b"" if check is None else keys.sortable(check),
        at.entry_tail,
        keys.sortable(order.created_at),
    ]


def _keep_ms(expires_at: float, now: float) -> int:
    """How long an account record must outlive `now` on Redis's clock to keep an entry until `expires_at`."""
    return max(1, math.ceil((expires_at - now + ACCOUNT_GRACE_SECONDS) * 1000))


def _account_entry(order_id: bytes, text: bytes) -> AccountEntry:
    state, lease_until, at, expires_at, value_cents, product = text.decode().split(" ", 5)
    return AccountEntry(
        order_id=order_id.decode(),
        product=product,
        value_cents=int(value_cents),
        at=float(at),
        expires_at=float(expires_at),
        state=EntryState(state),
        lease_until=float(lease_until),
    )


def _block(account: str, product: bytes, document: bytes) -> AccountBlock:
    return block_from(account, product.decode(), orjson.loads(document))


def _order(document: bytes | str) -> Order:
    return from_document(orjson.loads(document))
