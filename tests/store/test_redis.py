"""What only the Redis store has to show: outages, its password, its scripts, its key layout and its URL."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.order import Notification, OrderStatus, Reason
from gateway.store import StoreError, open_store
from gateway.store import redis_keys as keys
from gateway.store.memory import MemoryStore
from gateway.store.redis import NONCES_SCRIPT, ORDERS_SCRIPT, RedisStore
from gateway.store.redis_endpoint import POOL_SIZE, RedisEndpoint, redact_url
from tests.redis_servers import RedisCluster, RedisServer, redis_cluster, redis_server
from tests.store.samples import T0, an_order

__all__ = ["redis_cluster", "redis_server"]  # fixtures, used by name below

PASSWORD = "s3cr3t-p@ss/word"
ENCODED_PASSWORD = "s3cr3t-p%40ss%2Fword"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    opened = await RedisStore.open(redis_server.url)
    yield opened
    await opened.close()


@pytest.fixture
async def cluster_store(redis_cluster: RedisCluster) -> AsyncIterator[RedisStore]:
    opened = await RedisStore.open(redis_cluster.url)
    yield opened
    await opened.close()


async def _eventually(check: Callable[[], Awaitable[object]], seconds: float = 30.0) -> None:
    """Until `check` stops raising StoreError: the store must come back by itself, with no help."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await check()
        except StoreError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return


# outages


@pytest.mark.redis
async def test_a_restarted_redis_fails_calls_then_serves_them_again_by_itself(
    store: RedisStore, redis_server: RedisServer
) -> None:
    first, _ = await store.create_order(an_order("GW1"))

    redis_server.stop()
    for operation in (
        store.ping,
        lambda: store.get_order_by_uid("GW1"),
        lambda: store.create_order(an_order("GW2")),
        lambda: store.save_order(first),
        lambda: store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0),
        store.processing_orders,
    ):
        with pytest.raises(StoreError):
            await operation()

    redis_server.start()  # the same port, and empty: the test server keeps nothing, scripts included
    await store.ping()
    assert await store.get_order_by_uid("GW1") is None
    order, created = await store.create_order(an_order("GW3"))
    assert created
    assert (await store.save_order(order)).version == order.version + 1
    assert await store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0)


@pytest.mark.redis
async def test_a_restarted_cluster_node_fails_its_shards_then_serves_them_again(
    cluster_store: RedisStore, redis_cluster: RedisCluster
) -> None:
    orders = [an_order(f"GW{i:02d}") for i in range(30)]  # over many shards, so on every node
    for order in orders:
        await cluster_store.create_order(order)

    node = redis_cluster.nodes[0]
    node.stop()
    with pytest.raises(StoreError):
        await cluster_store.ping()
    with pytest.raises(StoreError):
        await cluster_store.processing_orders()

    node.start()  # keeps its node id and slots (nodes.conf), loses its data and scripts
    await _eventually(cluster_store.ping)
    await _eventually(cluster_store.processing_orders)
    survivors = [await cluster_store.get_order_by_uid(order.uid) for order in orders]
    assert 0 < sum(s is not None for s in survivors) < len(orders)  # the node's shards came back empty
    # The lost orders are stored anew, though their uid entries (on other nodes) outlived them; the
    # others answer as their own create sent again.
    recreated = [await cluster_store.create_order(order) for order in orders]
    assert recreated == [(order, True) for order in orders]
    assert [await cluster_store.get_order_by_uid(order.uid) for order in orders] == orders


async def test_a_store_nobody_answers_fails_to_open_with_store_error() -> None:
    with pytest.raises(StoreError, match="start failed"):
        await open_store("redis://127.0.0.1:1/0?connect_timeout_seconds=0.5")


# the password


async def _with_password(server: RedisServer) -> str:
    client = Redis.from_url(server.url)
    try:
        await client.config_set("requirepass", PASSWORD)
    finally:
        await client.aclose()
    return f"redis://:{ENCODED_PASSWORD}@127.0.0.1:{server.port}/0"


def _assert_hidden(text: str) -> None:
    assert PASSWORD not in text
    assert ENCODED_PASSWORD not in text
    assert "s3cr3t" not in text


@pytest.mark.redis
async def test_the_password_never_shows_in_the_store_or_its_errors(redis_server: RedisServer) -> None:
    url = await _with_password(redis_server)
    store = await open_store(url)
    try:
        await store.create_order(an_order("GW1"))
        _assert_hidden(repr(store))
        _assert_hidden(str(store))
        assert "****" in repr(store)

        redis_server.stop()
        with pytest.raises(StoreError) as raised:
            await store.get_order_by_uid("GW1")
        _assert_hidden(str(raised.value))
        _assert_hidden(repr(raised.value))
        assert "****" in str(raised.value)
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_wrong_password_fails_to_open_without_showing_either_password(
    redis_server: RedisServer,
) -> None:
    await _with_password(redis_server)

    with pytest.raises(StoreError) as raised:
        await open_store(f"redis://:wrong-s3cr3t@127.0.0.1:{redis_server.port}/0")

    _assert_hidden(str(raised.value))
    assert "wrong-s3cr3t" not in str(raised.value)
    cause = raised.value.__cause__
    assert cause is None or "s3cr3t" not in str(cause)


def test_the_password_never_shows_in_url_errors_or_the_endpoint() -> None:
    endpoint = RedisEndpoint.parse(f"redis://user:{ENCODED_PASSWORD}@db.internal:6380/2")
    _assert_hidden(repr(endpoint))
    _assert_hidden(endpoint.redacted)
    assert endpoint.redacted == "redis://user:****@db.internal:6380/2"
    assert endpoint.password is not None
    assert endpoint.password.reveal() == PASSWORD
    _assert_hidden(repr(endpoint.password))

    for bad in (
        f"redis://:{ENCODED_PASSWORD}@host:port/0",
        f"redis://:{ENCODED_PASSWORD}@host:6379/x",
        f"redis://:{ENCODED_PASSWORD}@host:6379/0?pool_size=0",
        f"redis://:{ENCODED_PASSWORD}@host:6379/0?colour=red",
        f"redis+cluster://:{ENCODED_PASSWORD}@host:6379/3",
    ):
        with pytest.raises(ValueError, match="store URL redis") as raised:
            RedisEndpoint.parse(bad)
        _assert_hidden(str(raised.value))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@cache:6379/0", "redis://:****@cache:6379/0"),
        ("rediss://user:p@w/x@cache:6379/0", "rediss://user:****@cache:6379/0"),
        ("redis+cluster://:pw@a:1,b:2", "redis+cluster://:****@a:1,b:2"),
        ("redis://user@cache:6379/0", "redis://user@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite:///var/x:y@z.db", "sqlite:///var/x:y@z.db"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_masks_only_a_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# scripts


@pytest.mark.redis
async def test_scripts_are_loaded_again_after_script_flush(
    store: RedisStore, redis_server: RedisServer
) -> None:
    order, _ = await store.create_order(an_order("GW1"))
    assert await store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0)

    redis_server.cli("SCRIPT", "FLUSH")

    saved = await store.save_order(replace(order, message="after the flush"))
    assert saved.version == order.version + 1
    assert (await store.create_order(an_order("GW2")))[1]
    assert not await store.claim_nonce("shop-a", "n1", expires_at=T0 + 300, now=T0 + 1)


@pytest.mark.redis
async def test_scripts_are_loaded_into_every_primary_at_open(
    cluster_store: RedisStore, redis_cluster: RedisCluster
) -> None:
    shas = [cluster_store.client.register_script(s).sha for s in (ORDERS_SCRIPT, NONCES_SCRIPT)]

    for node in redis_cluster.nodes:
        assert node.cli("SCRIPT", "EXISTS", *shas).split() == ["1", "1"]


# a reply lost after the write landed: the same call sent again answers as the first time


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["server", "cluster"])
async def test_a_create_or_save_sent_twice_answers_as_the_first_time(
    request: pytest.FixtureRequest, kind: str
) -> None:
    server = request.getfixturevalue("redis_server" if kind == "server" else "redis_cluster")
    store = await RedisStore.open(server.url)
    try:
        order = an_order("GW1")
        assert await store.create_order(order) == (order, True)
        assert await store.create_order(order) == (order, True)

        changed = replace(order, message="once")
        saved = await store.save_order(changed)
        assert await store.save_order(changed) == saved  # the same bytes on the same version
        assert await store.get_order_by_uid("GW1") == saved
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_nonce_claim_sent_twice_answers_as_the_first_time(store: RedisStore) -> None:
    claim = store.client.register_script(NONCES_SCRIPT)
    key = keys.nonce_key("shop-a", "n1")

    async def run(token: str) -> int:
        reply: int = await claim(keys=[key], args=[repr(T0 + 300), repr(T0), token, 60_000])
        return reply

    assert await run("token-1") == 1
    assert await run("token-1") == 1  # the same claim: its reply was lost
    assert await run("token-2") == 0  # a replay of the request: another claim


# the key layout


@pytest.mark.redis
async def test_the_keys_of_one_order_share_one_slot(
    cluster_store: RedisStore, redis_cluster: RedisCluster
) -> None:
    order = an_order("GW1", shop="商户-{7}", order_id="o-{1}:x", notification=Notification(due_at=T0))
    await cluster_store.create_order(order)
    await cluster_store.save_order(replace(order, status=OrderStatus.SUCCEEDED))
    at = keys.order_keys(order.shop, order.order_id, order.uid)
    node = redis_cluster.nodes[0]

    slots = {int(node.cli("CLUSTER", "KEYSLOT", key.decode())) for key in (at.order, at.index)}

    assert len(slots) == 1
    client = cluster_store.client
    assert await client.hget(at.order, "u") == b"GW1"
    # all, status, reason, status and reason, notification due, created
    assert await client.zcard(at.index) == 6


def test_the_shards_spread_evenly_over_the_slots() -> None:
    cluster_nodes = [range(5461), range(5461, 10923), range(10923, 16384)]  # redis-cli's own split
    slots = [key_slot(tag) for tag in keys.SHARD_TAGS]

    assert len(set(slots)) == keys.SHARDS
    per_node = [sum(slot in node for slot in slots) for node in cluster_nodes]
    assert max(per_node) - min(per_node) <= 2
    assert [key_slot(key) for key in keys.INDEX_KEYS] == slots


def test_listing_entries_sort_as_their_times() -> None:
    times = [0.0, 1e-9, 1.5, T0, T0 + 1e-6, T0 + 12.345678, 4e9, -1.0, -2.5]

    assert sorted(times, key=keys.sortable) == sorted(times)
    assert all(len(keys.sortable(t)) == 16 for t in times)


@pytest.mark.redis
async def test_an_uid_index_entry_naming_another_order_reads_as_absent(store: RedisStore) -> None:
    """What a crash between a Cluster create's steps leaves: an entry whose order carries another uid."""
    await store.create_order(an_order("GW1", order_id="o-1"))
    await store.client.set(keys.uid_key("GW9"), keys.order_key("shop-a", "o-1"))

    assert await store.get_order_by_uid("GW9") is None
    assert await store.get_order_by_upstream_id("GW901") is None


async def _calls(store: RedisStore, command: str) -> int:
    stats = await store.client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.redis
async def test_a_lookup_by_uid_skips_the_uid_index_once_the_key_is_known(redis_server: RedisServer) -> None:
    creator = await RedisStore.open(redis_server.url)
    reader = await RedisStore.open(redis_server.url)
    try:
        order, _ = await creator.create_order(an_order("GW1", order_id="o-1"))
        gets = await _calls(creator, "get")
        assert await creator.get_order_by_uid("GW1") == order  # it created it: the key is known
        assert await _calls(creator, "get") == gets

        assert await reader.get_order_by_uid("GW1") == order  # another instance asks the index once
        assert await reader.get_order_by_uid("GW1") == order
        assert await _calls(reader, "get") == gets + 1

        # The order itself is still read every time: a save by another instance shows at once.
        saved = await creator.save_order(replace(order, status=OrderStatus.SUCCEEDED, reason=None))
        assert await reader.get_order_by_uid("GW1") == saved
    finally:
        await creator.close()
        await reader.close()


@pytest.mark.redis
async def test_a_known_key_whose_order_is_gone_or_replaced_reads_as_absent(store: RedisStore) -> None:
    await store.create_order(an_order("GW1", order_id="o-1"))
    assert await store.get_order_by_uid("GW1") is not None
    await store.client.delete(keys.order_key("shop-a", "o-1"))
    assert await store.get_order_by_uid("GW1") is None

    # The same (shop, order_id) created again under a new uid: the old uid names nothing.
    await store.create_order(an_order("GW2", order_id="o-1"))
    assert await store.get_order_by_uid("GW1") is None
    found = await store.get_order_by_uid("GW2")
    assert found is not None
    assert found.uid == "GW2"


@pytest.mark.redis
async def test_a_duplicate_create_on_a_cluster_leaves_no_uid_entry(cluster_store: RedisStore) -> None:
    await cluster_store.create_order(an_order("GW1", order_id="o-1"))

    _, created = await cluster_store.create_order(an_order("GW2", order_id="o-1"))

    assert not created
    assert await cluster_store.client.exists(keys.uid_key("GW2")) == 0
    assert await cluster_store.client.exists(keys.uid_key("GW1")) == 1


# listings over the shards


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["server", "cluster"])
async def test_listings_agree_with_the_memory_store_when_one_shard_holds_most_orders(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """A shard that holds more than its share of a listing is asked again: nothing is left out."""
    server = request.getfixturevalue("redis_server" if kind == "server" else "redis_cluster")
    store = await RedisStore.open(server.url)
    memory = MemoryStore()
    rng = random.Random(7)
    crowded = keys.order_keys("shop-a", "o-0", "GW0").index
    order_ids = [f"o-{n}" for n in range(3000)]
    in_crowded = [o for o in order_ids if keys.order_keys("shop-a", o, "").index == crowded][:60]
    elsewhere = [o for o in order_ids if keys.order_keys("shop-a", o, "").index != crowded][:40]
    statuses = [OrderStatus.PROCESSING, OrderStatus.SUCCEEDED, OrderStatus.FAILED]
    try:
        for n, order_id in enumerate(in_crowded + elsewhere):
            status = rng.choice(statuses)
            order = an_order(
                f"GW{n:03d}",
                order_id=order_id,
                updated_at=T0 + rng.randrange(50),  # ties too: they list by uid
                status=status,
                reason=None if status is OrderStatus.SUCCEEDED else Reason.SUPPLIER_FAILED,
                notification=Notification(due_at=T0 + rng.randrange(30)) if rng.random() < 0.7 else None,
            )
            for backend in (store, memory):
                await backend.create_order(order)

        for limit in (1, 5, 30, 64, 200):
            for status in (None, *statuses):
                assert await store.list_orders(status=status, limit=limit) == await memory.list_orders(
                    status=status, limit=limit
                )
            assert await store.processing_orders(limit) == await memory.processing_orders(limit)
            for now in (T0 + 5, T0 + 30):
                due = await store.due_notifications(now, limit)
                expected = await memory.due_notifications(now, limit)
                assert [o.uid for o in due] == [o.uid for o in expected]
    finally:
        await store.close()


# the connection pool


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["server", "cluster"])
async def test_a_burst_beyond_the_pool_waits_for_connections(
    request: pytest.FixtureRequest, kind: str
) -> None:
    server = request.getfixturevalue("redis_server" if kind == "server" else "redis_cluster")
    store = await RedisStore.open(server.url + "?pool_size=2")
    try:
        results = await asyncio.gather(*(store.create_order(an_order(f"GW{i:03d}")) for i in range(200)))
        assert all(created for _, created in results)
        assert len(await store.processing_orders()) == 200
    finally:
        await store.close()


# the URL


def test_urls_name_servers_clusters_and_options() -> None:
    single = RedisEndpoint.parse("redis://cache:6380/3")
    assert (single.nodes, single.db, single.cluster, single.pool_size) == (
        (("cache", 6380),),
        3,
        False,
        POOL_SIZE,
    )
    assert single.password is None
    assert single.redacted == "redis://cache:6380/3"

    tls = RedisEndpoint.parse("rediss://user:pw@cache?pool_size=8&timeout_seconds=1.5")
    assert (tls.scheme, tls.nodes, tls.db, tls.username) == ("rediss", (("cache", 6379),), 0, "user")
    assert (tls.pool_size, tls.timeout_seconds) == (8, 1.5)

    cluster = RedisEndpoint.parse("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert cluster.cluster
    assert cluster.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert cluster.redacted == "redis+cluster://:****@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002"

    unencoded = RedisEndpoint.parse("redis://:p@ss@cache:6379/0")  # the last @ ends the password
    assert unencoded.password is not None
    assert unencoded.password.reveal() == "p@ss"
    assert unencoded.redacted == "redis://:****@cache:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "memory://",
        "redis:/cache",
        "redis://:6379/0",
        "redis://a:1,b:2/0",
        "redis://cache:99999/0",
        "redis://cache:6379/0?pool_size=many",
        "redis://cache:6379/0?timeout_seconds=0",
        "redis+cluster://a:1,b:2/1",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="store URL"):
        RedisEndpoint.parse(url)


async def test_an_unknown_scheme_is_named_without_the_rest_of_its_url() -> None:
    with pytest.raises(ValueError, match="'postgres'") as raised:
        await open_store("postgres://admin:hunter2-secret@db.internal:5432/orders")
    assert "hunter2-secret" not in str(raised.value)
    assert "redis+cluster://" in str(raised.value)  # and it lists what is valid


async def test_open_waits_for_a_redis_still_loading_its_data(redis_server: RedisServer) -> None:
    """After a restart Redis answers LOADING until its data set is read back; a gateway started
    alongside it (compose, a host reboot) waits for it rather than exiting."""
    redis_server.stop()
    redis_server.durable = True
    redis_server.start()
    filler = Redis(port=redis_server.port)
    await filler.eval("for i = 1, 4000 do redis.call('SET', 'filler:' .. i, i) end", 0)
    # Into the AOF's base file, an RDB, whose reading `key-load-delay` slows down.
    await filler.bgrewriteaof()
    for _ in range(500):
        if not (await filler.info("persistence"))["aof_rewrite_in_progress"]:
            break
        await asyncio.sleep(0.02)
    with contextlib.suppress(RedisConnectionError):
        await filler.shutdown(nosave=True)  # a clean stop: the restart reads the rewritten file
    await filler.aclose()
    redis_server.stop()
    _restart_loading_slowly(redis_server)
    assert await _answer_to_ping(redis_server.port) == b"-LOADING"
    try:
        with pytest.raises(StoreError, match=r"(?i)loading"):
            await RedisStore.open(redis_server.url, loading_wait=0)
        store = await RedisStore.open(redis_server.url)
        try:
            assert await store.get_order("shop-a", "nothing") is None
        finally:
            await store.close()
    finally:
        redis_server.stop()


async def _answer_to_ping(port: int) -> bytes:
    """The start of Redis's answer to a PING once it listens, read off the socket: no client's retries."""
    for _ in range(250):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        try:
            writer.write(b"PING\r\n")
            return (await reader.readline()).split(b" ")[0].strip()
        finally:
            writer.close()
    raise AssertionError(f"nothing listens on port {port}")


def _restart_loading_slowly(server: RedisServer) -> None:
    """Start `server` again on its data, reading it back slowly, without waiting for it to answer."""
    args = ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1"]
    args += ["--dir", str(server.folder), "--save", "", "--appendonly", "yes"]
    # µs per key: about two seconds of LOADING, answering LOADING at once all along (not at 2 MB steps)
    args += ["--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"]
    server.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
