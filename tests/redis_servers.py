"""Real Redis for the tests: a `redis-server` of their own on a free loopback port, and a 3-node Cluster.

Never a shared server: the tests start their own processes in a temporary folder, with no
persistence unless a test asks for a durable one, and stop them afterwards. A server is started per
test; the cluster once per run (it takes seconds to form) and emptied before each test. Where
`redis-server` is missing the tests skip locally and fail in CI (`tests/tools.py`).
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tools import need

START_SECONDS = 10.0


def free_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too, below the ephemeral range.

    An ephemeral port could be taken by some client connection while a server restarts on it, and
    above 55535 a cluster node's bus port would not exist.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 30000)
        try:
            with socket.socket() as first, socket.socket() as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for redis-server")


@dataclass
class RedisServer:
    """One `redis-server` process; `stop` and `start` again on the same port (and data) to test outages.

    `durable`: every write is appended to the AOF and fsynced before Redis answers it, so a kill
    (`stop`) loses nothing acknowledged and `start` reloads it all. Otherwise a restart starts empty.
    """

    folder: Path
    port: int = field(default_factory=free_port)
    cluster: bool = False
    durable: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        args += ["--save", "", "--protected-mode", "no"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_answering()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=START_SECONDS)
        self.process = None

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=True,
        )
        return result.stdout.strip()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")


@dataclass
class RedisCluster:
    """Three masters, no replicas, every slot assigned: the smallest real Redis Cluster."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=30,
            check=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while "cluster_state:ok" not in self.nodes[0].cli("cluster", "info"):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    need("redis-server", "redis-cli")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _shared_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    # Making a cluster takes seconds: one per run, emptied before each test that asks for it.
    need("redis-server", "redis-cli")
    folder = tmp_path_factory.mktemp("redis-cluster")
    cluster = RedisCluster([RedisServer(folder / f"node-{n}", cluster=True) for n in range(3)])
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(_shared_redis_cluster: RedisCluster) -> RedisCluster:
    """The run's Redis Cluster, every node emptied (keys and loaded scripts) for this test."""
    for node in _shared_redis_cluster.nodes:
        node.cli("flushall")
        node.cli("script", "flush")
    return _shared_redis_cluster


@pytest.fixture(
    params=[pytest.param("server", marks=pytest.mark.redis), pytest.param("cluster", marks=pytest.mark.redis)]
)
def redis_url(request: pytest.FixtureRequest) -> str:
    """The store URL of a Redis server of the test's own, then of the run's Cluster: each test twice."""
    if request.param == "server":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url
