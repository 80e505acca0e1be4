"""Each configured supplier at run time: its adapter, timeouts, metric children and operator switches.

Built once from the configuration; per-order code only reads these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import ClientTimeout

from adapters.interface import AdapterSettings, SupplierAdapter
from adapters.registry import adapter_factory
from gateway.config.model import GatewayConfig, SupplierConfig
from gateway.metrics import Metrics, SupplierMetrics


@dataclass(slots=True, kw_only=True)
class Supplier:
    name: str
    config: SupplierConfig
    adapter: SupplierAdapter
    timeout: ClientTimeout
    metrics: SupplierMetrics
    callback_url: str
    disabled: bool = False
    inflight: int = 0  # read by the inflight gauge at scrape time, so requests cost one integer add

    @property
    def routable(self) -> bool:
        return not self.disabled

    def set_disabled(self, disabled: bool) -> None:
        self.disabled = disabled
        self.metrics.up.set(0 if disabled else 1)


def callback_url(public_url: str, supplier: str) -> str:
    return f"{public_url.rstrip('/')}/callbacks/{supplier}"


def build_suppliers(config: GatewayConfig, metrics: Metrics) -> Mapping[str, Supplier]:
    suppliers: dict[str, Supplier] = {}
    for name, sc in config.suppliers.items():
        adapter = adapter_factory(sc.protocol)(
            AdapterSettings(
                name=name,
                base_url=sc.base_url,
                credentials={key: secret.reveal() for key, secret in sc.credentials.items()},
                codes=sc.codes,
            )
        )
        supplier = Supplier(
            name=name,
            config=sc,
            adapter=adapter,
            # Connect is bounded on its own so that "never reached it" stays distinguishable
            # from "sent, then no answer" (see upstream.py).
            timeout=ClientTimeout(total=None, connect=sc.connect_timeout, sock_connect=sc.connect_timeout),
            metrics=metrics.supplier(name),
            callback_url=callback_url(config.server.public_url, name),
        )
        supplier.metrics.inflight.set_function(lambda s=supplier: float(s.inflight))  # type: ignore[misc]
        supplier.set_disabled(sc.disabled)
        suppliers[name] = supplier
    return suppliers
