"""Where the Redis store is and how to reach it: its URL parsed, shown without the password, made a client.

Owns the URL's syntax, its options and the redis-py client's settings; it never sends a command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import parse_qsl, quote, unquote

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.secret import Secret
from gateway.store.urls import MASK, redact_url

SCHEMES: Final = ("redis", "rediss", "redis+cluster")
DEFAULT_PORT: Final = 6379
# Connections per Redis server (on a Cluster, per node); the store never has more commands in flight,
# so a burst waits for a connection instead of failing. `?pool_size=` overrides it.
POOL_SIZE: Final = 32
# How long a reply may take (`?timeout_seconds=`) and a connection may take to open
# (`?connect_timeout_seconds=`); an unreachable Redis fails a call within about these, times RETRIES + 1.
TIMEOUT_SECONDS: Final = 5.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
# Extra tries of a command whose connection broke or timed out: enough to ride over a closed idle
# connection or a failover's first moments, few enough that an outage answers 503 promptly. Safe,
# because every write the store sends is answered the same when it is sent again (see the scripts).
RETRIES: Final = 2
RETRY_BACKOFF_SECONDS: Final = (0.02, 0.2)  # base and cap of the jittered exponential backoff

Client = Redis | RedisCluster
_N = TypeVar("_N", int, float)


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """A parsed store URL: `redis://[[user]:password@]host[:port][/db][?options]`, `rediss://` for TLS,
    `redis+cluster://[[user]:password@]host:port[,host:port...][?options]` for a Cluster.

    Options: `pool_size` (connections per server, default `POOL_SIZE`), `timeout_seconds` and
    `connect_timeout_seconds`. User and password are percent-decoded (a `%` in a password is `%25`);
    the last `@` ends them, so other characters need no encoding.
    """

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: Secret | None
    pool_size: int
    timeout_seconds: float
    connect_timeout_seconds: float
    redacted: str  # the URL as given, its password replaced by MASK: what logs and errors may show

    @property
    def cluster(self) -> bool:
        return self.scheme == "redis+cluster"

    @classmethod
    def parse(cls, url: str) -> RedisEndpoint:
        """The endpoint of `url`; `ValueError` (never quoting the password) if it is not a Redis store URL."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            expected = ", ".join(s + "://" for s in SCHEMES)
            raise ValueError(f"not a Redis store URL; expected one of {expected}")
        userinfo, at, location = rest.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            if colon:
                password = Secret(unquote(secret))
        redacted = redact_url(url)
        try:
            endpoint = cls._from_parts(scheme, location, username, password, redacted)
        except ValueError as exc:
            raise ValueError(f"store URL {redacted}: {exc}") from None
        return endpoint

    @classmethod
    def _from_parts(
        cls, scheme: str, location: str, username: str | None, password: Secret | None, redacted: str
    ) -> RedisEndpoint:
        location, _, query = location.partition("?")
        hosts, _, path = location.partition("/")
        nodes = tuple(_host_port(node) for node in hosts.split(","))
        if scheme != "redis+cluster" and len(nodes) != 1:
            raise ValueError("several hosts need redis+cluster://")
        db = _number(path, "database", int) if path else 0
        if scheme == "redis+cluster" and db != 0:
            raise ValueError("a Redis Cluster has only database 0")
        options = _options(query)
        pool_size = _number(options.get("pool_size", str(POOL_SIZE)), "pool_size", int)
        timeout = _number(options.get("timeout_seconds", str(TIMEOUT_SECONDS)), "timeout_seconds", float)
        connect = _number(
            options.get("connect_timeout_seconds", str(CONNECT_TIMEOUT_SECONDS)),
            "connect_timeout_seconds",
            float,
        )
        if pool_size < 1 or timeout <= 0 or connect <= 0:
            raise ValueError("pool_size must be at least 1 and the timeouts above 0")
        return cls(scheme, nodes, db, username, password, pool_size, timeout, connect, redacted)

    def scrub(self, text: str) -> str:
        """`text` with the password (as given and URL-encoded) masked: for messages quoting foreign errors."""
        if self.password:
            secret = self.password.reveal()
            for form in (secret, quote(secret, safe="")):
                text = text.replace(form, MASK)
        return text

    def client(self) -> Client:
        """A redis-py client for the endpoint; it connects on first use."""
        retry = Retry(
            ExponentialWithJitterBackoff(*RETRY_BACKOFF_SECONDS),
            RETRIES,
            supported_errors=(RedisConnectionError, RedisTimeoutError),
        )
        password = self.password.reveal() if self.password is not None else None
        if self.cluster:
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
                max_connections=self.pool_size,
                retry=retry,
                username=self.username,
                password=password,
                socket_timeout=self.timeout_seconds,
                socket_connect_timeout=self.connect_timeout_seconds,
            )
        host, port = self.nodes[0]
        return Redis(
            host=host,
            port=port,
            db=self.db,
            username=self.username,
            password=password,
            ssl=self.scheme == "rediss",
            max_connections=self.pool_size,
            retry=retry,
            socket_timeout=self.timeout_seconds,
            socket_connect_timeout=self.connect_timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"RedisEndpoint({self.redacted!r})"


_OPTIONS: Final = ("pool_size", "timeout_seconds", "connect_timeout_seconds")


def _options(query: str) -> Mapping[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(_OPTIONS)}")
    return options


def _host_port(node: str) -> tuple[str, int]:
    if node.startswith("["):  # [IPv6]:port
        host, bracket, port = node[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"bad host {node!r}")
        port = port[1:]
    else:
        host, _, port = node.partition(":")
    if not host:
        raise ValueError("a host is missing")
    number = _number(port, "port", int) if port else DEFAULT_PORT
    if not 0 < number < 65536:
        raise ValueError(f"bad port {number}")
    return host, number


def _number(text: str, what: str, kind: type[_N]) -> _N:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"bad {what} {text!r}") from None
