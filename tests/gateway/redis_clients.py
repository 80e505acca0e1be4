"""redis-py clients on the test's own Redis: a single server or the 3-node Cluster, by name.

A test module using `open_client` must import the `redis_server` and `redis_cluster` fixtures, so
that pytest can find them by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from tests.redis_servers import RedisCluster, RedisServer

Kind = Literal["server", "cluster"]
KINDS: tuple[Kind, ...] = ("server", "cluster")


@asynccontextmanager
async def open_client(request: pytest.FixtureRequest, kind: Kind) -> AsyncIterator[Redis | ClusterClient]:
    """A client on a fresh Redis of `kind`, closed afterwards; the server stops with the test."""
    client: Redis | ClusterClient
    if kind == "server":
        server: RedisServer = request.getfixturevalue("redis_server")
        client = Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        client = ClusterClient(host="127.0.0.1", port=cluster.nodes[0].port, socket_timeout=5)
        await client.initialize()
    try:
        yield client
    finally:
        await client.aclose()
