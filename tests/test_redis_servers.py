"""The Redis fixtures themselves: a server of our own answers; the cluster spreads slots over three nodes."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from tests.redis_servers import RedisCluster, RedisServer, redis_cluster, redis_server

__all__ = ["redis_cluster", "redis_server"]  # fixtures, used by name below


async def test_a_server_of_our_own_answers_and_comes_back_after_a_restart(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.ping()
        await client.set("k", "v")
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()
    redis_server.stop()
    redis_server.start()
    again = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await again.ping()
        assert await again.get("k") is None  # no persistence: a restart starts empty
    finally:
        await again.aclose()


async def test_the_cluster_has_three_masters_sharing_every_slot(redis_cluster: RedisCluster) -> None:
    first = redis_cluster.nodes[0]
    client = AsyncRedisCluster(host="127.0.0.1", port=first.port)
    try:
        await client.initialize()
        nodes = client.get_nodes()
        assert len([n for n in nodes if n.server_type == "primary"]) == 3
        for key in ("{a}x", "{b}y", "{c}z"):
            await client.set(key, key)
            assert await client.get(key) == key.encode()
    finally:
        await client.aclose()
