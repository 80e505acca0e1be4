"""Store backends by URL scheme: `memory://`, `sqlite:///path`; an unknown scheme lists the valid ones."""

from __future__ import annotations

from gateway.store.interface import StaleOrder, Store, StoreError

__all__ = ["STORE_SCHEMES", "StaleOrder", "Store", "StoreError", "open_store"]

STORE_SCHEMES = ("memory", "sqlite")


class UnknownStore(ValueError):
    def __init__(self, url: str) -> None:
        super().__init__(
            f"unknown store {url!r}; valid schemes: {', '.join(s + '://' for s in STORE_SCHEMES)}"
        )


async def open_store(url: str) -> Store:
    scheme = url.partition("://")[0]
    if scheme == "memory":
        from gateway.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from gateway.store.sqlite import SqliteStore, sqlite_path

        return await SqliteStore.open(sqlite_path(url))
    raise UnknownStore(url)
