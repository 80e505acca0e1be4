"""What each shop may sell and where it may be notified, resolved from globs once at start-up or reload."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

from gateway.config.model import GatewayConfig, ProductConfig


class Catalog:
    """Products by name and, per shop, the set it may sell: no glob matching per order."""

    __slots__ = ("_allowed", "_notify_hosts", "products")

    def __init__(self, config: GatewayConfig) -> None:
        self.products: Mapping[str, ProductConfig] = config.products
        self._allowed: dict[str, frozenset[str]] = {
            shop: frozenset(
                name
                for name in config.products
                if any(fnmatchcase(name, glob) for glob in shop_config.products)
            )
            for shop, shop_config in config.shops.items()
        }
        self._notify_hosts: dict[str, frozenset[str]] = {
            shop: frozenset(host.lower() for host in shop_config.notify_hosts)
            for shop, shop_config in config.shops.items()
        }

    def may_sell(self, shop: str, product: str) -> bool:
        allowed = self._allowed.get(shop)
        return allowed is not None and product in allowed

    def may_notify(self, shop: str, host: str) -> bool:
        hosts = self._notify_hosts.get(shop)
        return hosts is not None and host.lower() in hosts
