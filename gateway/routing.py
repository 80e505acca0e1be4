"""Which offers of a product to try, in which order: `priority`, `weighted`, `cheapest` and `adaptive`.

Only orders offers; it never sends, and it skips suppliers that are not routable right now.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import assert_never

from gateway.config.model import OfferConfig, ProductConfig, Routing
from gateway.suppliers import Supplier


def _weighted_shuffle(offers: Sequence[OfferConfig], rng: random.Random) -> list[OfferConfig]:
    """Order by weight: each place drawn with probability proportional to weight (Efraimidis–Spirakis)."""
    keyed = [(rng.random() ** (1.0 / offer.weight) if offer.weight > 0 else -1.0, offer) for offer in offers]
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [offer for _, offer in keyed]


class Router:
    """Plans the offers for one order from the product's routing mode."""

    def __init__(self, suppliers: Mapping[str, Supplier], rng: random.Random) -> None:
        self._suppliers = suppliers
        self._rng = rng
        self._modes: Mapping[Routing, Callable[[Sequence[OfferConfig]], list[OfferConfig]]] = {
            Routing.PRIORITY: self._by_priority,
            Routing.WEIGHTED: lambda offers: _weighted_shuffle(offers, self._rng),
            Routing.CHEAPEST: lambda offers: sorted(offers, key=lambda o: (o.cost, o.priority)),
            Routing.ADAPTIVE: self._by_priority,
        }

    def available(self, product: ProductConfig) -> bool:
        """Whether any offer could be tried now (else the API answers 503 and records nothing)."""
        return any(self._routable(offer) for offer in product.offers)

    def plan(self, product: ProductConfig, tried: Collection[str] = ()) -> list[OfferConfig]:
        """Routable offers not yet tried for this order, best first."""
        candidates = [o for o in product.offers if o.supplier not in tried and self._routable(o)]
        if len(candidates) <= 1:
            return candidates
        mode = product.routing
        match mode:
            case Routing.PRIORITY | Routing.WEIGHTED | Routing.CHEAPEST | Routing.ADAPTIVE:
                return self._modes[mode](candidates)
            case _:
                assert_never(mode)

    def _routable(self, offer: OfferConfig) -> bool:
        supplier = self._suppliers.get(offer.supplier)
        return supplier is not None and supplier.routable

    def _by_priority(self, offers: Sequence[OfferConfig]) -> list[OfferConfig]:
        """Lowest priority number first; within one priority, a weighted draw spreads the load."""
        ordered: list[OfferConfig] = []
        for priority in sorted({o.priority for o in offers}):
            ordered.extend(_weighted_shuffle([o for o in offers if o.priority == priority], self._rng))
        return ordered
