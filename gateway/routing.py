"""Which offers of a product to try, in which order: `priority`, `weighted`, `cheapest` and `adaptive`.

Only orders offers; it never sends. Offers that do not serve the number's province and suppliers
that are disabled, open-circuit or saturated are left out; the rate limit is asked on admission.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final, assert_never

from gateway.clock import Clock
from gateway.config.model import OfferConfig, ProductConfig, Routing
from gateway.mobile import Province
from gateway.suppliers import Supplier

# Adaptive routing: a Beta prior worth PRIOR_CALLS calls at PRIOR_RATE success, so a cold supplier
# starts near the middle instead of at 0 or 1; EXPLORE_SHARE of orders try a lower-scored
# supplier first, so one that has recovered is noticed.
PRIOR_CALLS: Final = 10.0
PRIOR_RATE: Final = 0.9
EXPLORE_SHARE: Final = 0.05
LATENCY_SCALE_SECONDS: Final = 1.0
SCORE_TTL_SECONDS: Final = 1.0


def _weighted_shuffle(offers: Sequence[OfferConfig], rng: random.Random) -> list[OfferConfig]:
    """Order by weight: each place drawn with probability proportional to weight (Efraimidis–Spirakis)."""
    keyed = [(rng.random() ** (1.0 / offer.weight) if offer.weight > 0 else -1.0, offer) for offer in offers]
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [offer for _, offer in keyed]


def serves(offer: OfferConfig, province: Province | None) -> bool:
    """Whether `offer` takes numbers of `province` (None: unknown, or not a mobile number).

    An offer with a `provinces` list serves only those, so never an unknown province; one with
    `exclude_provinces` serves every other, unknown included; one with neither serves all.
    """
    if offer.provinces is not None:
        return province in offer.provinces
    return province not in offer.exclude_provinces


class Router:
    """Plans the offers for one order from the product's routing mode."""

    def __init__(self, suppliers: Mapping[str, Supplier], rng: random.Random, clock: Clock) -> None:
        self._suppliers = suppliers
        self._rng = rng
        self._clock = clock
        # Supplier health changes slowly next to the order rate: scores are reused for a second.
        self._health_scores: dict[str, tuple[float, float]] = {}
        self._modes: Mapping[Routing, Callable[[Sequence[OfferConfig]], list[OfferConfig]]] = {
            Routing.PRIORITY: self._by_priority,
            Routing.WEIGHTED: lambda offers: _weighted_shuffle(offers, self._rng),
            Routing.CHEAPEST: lambda offers: sorted(offers, key=lambda o: (o.cost, o.priority)),
            Routing.ADAPTIVE: self._adaptive,
        }

    def plan(
        self, product: ProductConfig, tried: Collection[str] = (), *, province: Province | None = None
    ) -> list[OfferConfig]:
        """Routable offers serving the number's `province`, not yet tried for this order, best first."""
        candidates = [
            o for o in product.offers if o.supplier not in tried and serves(o, province) and self._routable(o)
        ]
        if len(candidates) <= 1:
            return candidates
        mode = product.routing
        match mode:
            case Routing.PRIORITY | Routing.WEIGHTED | Routing.CHEAPEST | Routing.ADAPTIVE:
                return self._modes[mode](candidates)
            case _:
                assert_never(mode)

    def health_score(self, supplier: Supplier) -> float:
        """Success rate (with a prior) discounted by median latency: 1 is perfect, cached for a second."""
        now = self._clock.monotonic()
        cached = self._health_scores.get(supplier.name)
        if cached is not None and now - cached[0] < SCORE_TTL_SECONDS:
            return cached[1]
        counts = supplier.health.counts(now)
        success = (counts.successes + PRIOR_CALLS * PRIOR_RATE) / (counts.calls + PRIOR_CALLS)
        median = supplier.latency.quantile(0.5) or 0.0
        score = success**4 / (1.0 + median / LATENCY_SCALE_SECONDS)
        self._health_scores[supplier.name] = (now, score)
        return score

    def _routable(self, offer: OfferConfig) -> bool:
        supplier = self._suppliers.get(offer.supplier)
        return supplier is not None and supplier.routable

    def _by_priority(self, offers: Sequence[OfferConfig]) -> list[OfferConfig]:
        """Lowest priority number first; within one priority, a weighted draw spreads the load."""
        ordered: list[OfferConfig] = []
        for priority in sorted({o.priority for o in offers}):
            ordered.extend(_weighted_shuffle([o for o in offers if o.priority == priority], self._rng))
        return ordered

    def _adaptive(self, offers: Sequence[OfferConfig]) -> list[OfferConfig]:
        """Best health first, cost breaking near-ties; now and then a lower-scored supplier goes first."""
        cheapest = min(o.cost for o in offers) or 1
        scored = sorted(
            offers,
            key=lambda o: self.health_score(self._suppliers[o.supplier]) * (cheapest / max(o.cost, 1)) ** 2,
            reverse=True,
        )
        if self._rng.random() < EXPLORE_SHARE:
            scored.insert(0, scored.pop(self._rng.randrange(1, len(scored))))
        return scored
