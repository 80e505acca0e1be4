"""Store backends by URL scheme: `memory://`, `sqlite:///path`, `redis://`, `rediss://`, `redis+cluster://`.

An unknown scheme lists the valid ones.
"""

from __future__ import annotations

from gateway.store.interface import StaleOrder, Store, StoreError
from gateway.store.urls import redact_url

__all__ = ["STORE_SCHEMES", "StaleOrder", "Store", "StoreError", "open_store", "redact_url"]

STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+cluster")


class UnknownStore(ValueError):
    def __init__(self, url: str) -> None:
        # The scheme only: the rest of a URL may hold a password.
        super().__init__(
            f"unknown store scheme {url.partition('://')[0]!r}; valid schemes: "
            + ", ".join(s + "://" for s in STORE_SCHEMES)
        )


async def open_store(url: str) -> Store:
    scheme = url.partition("://")[0]
    if scheme == "memory":
        from gateway.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from gateway.store.sqlite import SqliteStore, sqlite_path

        return await SqliteStore.open(sqlite_path(url))
    if scheme in ("redis", "rediss", "redis+cluster"):
        from gateway.store.redis import RedisStore

        return await RedisStore.open(url)
    raise UnknownStore(url)
