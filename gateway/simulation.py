"""Serving suppliers that have a `simulate:` block from the bundled simulator, in-process, at their base_url.

Demo and tests only; a production configuration has no `simulate:` block and starts nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from gateway.config.model import GatewayConfig
from gateway.logs import get_logger
from gateway.simulator import Simulator, build_simulator
from gateway.simulator.listener import Listener
from gateway.suppliers import callback_url

log = get_logger(__name__)


class SimulatorFarm:
    """The simulated suppliers of one configuration, each on its own listener (which a crash can stop)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._listeners: list[Listener] = []
        self.simulators: Mapping[str, Simulator] = MappingProxyType({})

    async def start(self) -> None:
        simulators: dict[str, Simulator] = {}
        for name, supplier in self._config.suppliers.items():
            if supplier.simulate is None:
                continue
            skus = {
                offer.sku: product.face_value
                for product in self._config.products.values()
                for offer in product.offers
                if offer.supplier == name
            }
            simulator = build_simulator(
                supplier.protocol,
                credentials={key: secret.reveal() for key, secret in supplier.credentials.items()},
                knobs=supplier.simulate,
                callback_url=callback_url(self._config.server.public_url, name),
                catalog=skus,
            )
            url = urlsplit(supplier.base_url)
            self._listeners.append(await simulator.serve(url.hostname or "127.0.0.1", url.port or 80))
            simulators[name] = simulator
            log.info(
                "simulator_started", supplier=name, protocol=supplier.protocol, base_url=supplier.base_url
            )
        self.simulators = MappingProxyType(simulators)

    async def stop(self) -> None:
        for listener in reversed(self._listeners):
            await listener.close()
        self._listeners.clear()
