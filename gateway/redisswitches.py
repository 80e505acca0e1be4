"""Operator switches on Redis, shared by every instance on one server or Cluster: one hash, `gw:sw`.

Owns that key (a field per switch, `<kind>:<subject>`, its record as `switches.Switch` encodes it) and
keeps nothing per process. Redis's errors become `StoreError` here; a write that raised may still have
been kept (a lost reply), and then every instance's watch applies it, this one's too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.store import StoreError

KEY: Final = b"gw:sw"
# Commands in flight when the client is not shared with the store: a read a second and a rare write.
DEFAULT_PERMITS: Final = 4
_FOREIGN_ERRORS: Final = (RedisError, RedisClusterException, OSError)


class RedisSwitches:
    """The `SwitchState` several instances share: HSET to keep a switch, HGETALL to read them all.

    One key, so one slot on a Cluster; switches are few (one per supplier switched, overwritten by the
    next), so the hash stays a handful of short fields and reading it whole every second is cheap.
    """

    __slots__ = ("_client", "_key", "_permits")

    def __init__(
        self, client: Redis | RedisCluster, *, key: bytes = KEY, permits: asyncio.Semaphore | None = None
    ) -> None:
        self._client = client
        self._key = key
        # A client shared with the store shares its connection budget: redis-py's pool fails a command
        # at once rather than wait for a free connection.
        self._permits = permits if permits is not None else asyncio.Semaphore(DEFAULT_PERMITS)

    @property
    def shared(self) -> bool:
        return True

    async def put(self, name: str, record: bytes) -> None:
        try:
            async with self._permits:
                await self._client.hset(self._key, name, record)
        except _FOREIGN_ERRORS as exc:
            raise StoreError(
                f"operator switch {name!r} could not be kept: {type(exc).__name__}: {exc}"
            ) from exc

    async def records(self) -> Mapping[str, bytes]:
        try:
            async with self._permits:
                found = await self._client.hgetall(self._key)
        except _FOREIGN_ERRORS as exc:
            raise StoreError(f"operator switches could not be read: {type(exc).__name__}: {exc}") from exc
        # The client is made without decode_responses, so both are bytes; normalised for the type checker.
        return {_text(name): _bytes(record) for name, record in found.items()}


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
