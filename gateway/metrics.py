"""Prometheus series of CONTRACT.md §5 on a registry of the app's own, with label children bound once.

Hot paths get pre-bound children (`SupplierMetrics`, `ProductMetrics`, `RouteMetrics`) and never
call `.labels()` per order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from adapters.interface import Outcome
from gateway.order import OrderStatus, Reason

LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ORDER_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
OPERATIONS: Final = ("submit", "query")
CALLBACK_RESULTS: Final = ("accepted", "duplicate", "conflict", "bad_signature", "unknown_order", "malformed")
NOTIFY_RESULTS: Final = ("delivered", "retried", "gave_up")
RATE_RESULTS: Final = ("waited", "rejected")


@dataclass(frozen=True, slots=True)
class SupplierMetrics:
    """One supplier's children, bound at start-up."""

    requests: MappingProxyType[tuple[str, Outcome], Counter]  # (operation, outcome)
    duration: MappingProxyType[str, Histogram]  # operation
    circuit_state: Gauge
    up: Gauge
    inflight: Gauge
    rate_limited: MappingProxyType[str, Counter]
    callbacks: MappingProxyType[str, Counter]


@dataclass(frozen=True, slots=True)
class ProductMetrics:
    orders: MappingProxyType[OrderStatus, Counter]
    duration: Histogram


class RouteMetrics:
    """One HTTP route's children; status children are bound on first sight (a small, bounded set)."""

    __slots__ = ("_by_status", "_name", "_requests", "duration")

    def __init__(self, name: str, requests: Counter, duration: Histogram) -> None:
        self._name = name
        self._requests = requests
        self._by_status: dict[int, Counter] = {}
        self.duration = duration

    def observe(self, status: int, seconds: float) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(self._name, str(status))
        child.inc()
        self.duration.observe(seconds)


class Metrics:
    """Every series the gateway exports, on its own `CollectorRegistry` (no global default registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.orders_total = Counter(
            "gateway_orders_total", "Orders that reached a final status", ["product", "status"], registry=r
        )
        self.order_duration = Histogram(
            "gateway_order_duration_seconds",
            "Accept to final",
            ["product"],
            buckets=ORDER_BUCKETS,
            registry=r,
        )
        self.orders_processing = Gauge(
            "gateway_orders_processing", "Orders not yet final", ["reason"], registry=r
        )
        self.supplier_requests = Counter(
            "gateway_supplier_requests_total",
            "Requests sent to suppliers",
            ["supplier", "operation", "outcome"],
            registry=r,
        )
        self.supplier_duration = Histogram(
            "gateway_supplier_request_duration_seconds",
            "Supplier request latency",
            ["supplier", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.circuit_state = Gauge(
            "gateway_supplier_circuit_state", "0 closed, 1 half-open, 2 open", ["supplier"], registry=r
        )
        self.supplier_up = Gauge("gateway_supplier_up", "1 when routable", ["supplier"], registry=r)
        self.supplier_inflight = Gauge(
            "gateway_supplier_inflight", "Requests in flight", ["supplier"], registry=r
        )
        self.rate_limited = Counter(
            "gateway_supplier_rate_limited_total", "Local rate limiting", ["supplier", "result"], registry=r
        )
        self.callbacks = Counter(
            "gateway_callbacks_total", "Supplier callbacks", ["supplier", "result"], registry=r
        )
        self.notifications = Counter(
            "gateway_notifications_total", "Shop notifications", ["result"], registry=r
        )
        self.conflicts = Counter(
            "gateway_order_conflicts_total", "Reports contradicting a final state", ["supplier"], registry=r
        )
        self.store_up = Gauge("gateway_store_up", "1 when the store answers", registry=r)
        # Children are made at a supplier's first balance read, so the series is absent until then.
        self.supplier_balance = Gauge(
            "gateway_supplier_balance",
            "Supplier's prepaid balance, CNY, as last read",
            ["supplier"],
            registry=r,
        )
        self.supplier_balance_low = Gauge(
            "gateway_supplier_balance_low",
            "1 while the supplier's last read balance is below its balance.low mark",
            ["supplier"],
            registry=r,
        )
        self.supplier_balance_checked = Gauge(
            "gateway_supplier_balance_checked_timestamp_seconds",
            "Unix time of the supplier's last successful balance read",
            ["supplier"],
            registry=r,
        )
        self.shop_refusals = Counter(
            "gateway_shop_requests_refused_total",
            "Shop requests refused before the charge (CONTRACT.md §7, §8)",
            ["shop", "code"],
            registry=r,
        )
        self._shop_refusals: dict[tuple[str, str], Counter] = {}
        self.order_cost = Counter(
            "gateway_order_cost_total",
            "CNY the deciding supplier charged for succeeded and partial orders (CONTRACT.md §12)",
            ["supplier", "product"],
            registry=r,
        )
        self._order_costs: dict[tuple[str, str], Counter] = {}
        # Set at each scrape from the store (every instance's outbox on a shared one).
        self.notifications_pending = Gauge(
            "gateway_notifications_pending", "Shop notifications not yet delivered nor given up", registry=r
        )
        self.http_requests = Counter(
            "gateway_http_requests_total", "HTTP requests", ["route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Plain counts read at scrape time: orders change reason several times, each a locked
        # gauge update otherwise.
        self.processing: dict[Reason, int] = {reason: 0 for reason in Reason if not _final_reason(reason)}
        for reason in self.processing:
            self.orders_processing.labels(reason.value).set_function(
                partial(self.processing.__getitem__, reason)
            )
        self.notifications_by_result = MappingProxyType(
            {res: self.notifications.labels(res) for res in NOTIFY_RESULTS}
        )

    def supplier(self, name: str) -> SupplierMetrics:
        return SupplierMetrics(
            requests=MappingProxyType(
                {
                    (op, outcome): self.supplier_requests.labels(name, op, outcome.value)
                    for op in OPERATIONS
                    for outcome in Outcome
                }
            ),
            duration=MappingProxyType({op: self.supplier_duration.labels(name, op) for op in OPERATIONS}),
            circuit_state=self.circuit_state.labels(name),
            up=self.supplier_up.labels(name),
            inflight=self.supplier_inflight.labels(name),
            rate_limited=MappingProxyType({res: self.rate_limited.labels(name, res) for res in RATE_RESULTS}),
            callbacks=MappingProxyType({res: self.callbacks.labels(name, res) for res in CALLBACK_RESULTS}),
        )

    def product(self, name: str) -> ProductMetrics:
        return ProductMetrics(
            orders=MappingProxyType(
                {
                    status: self.orders_total.labels(name, status.value)
                    for status in OrderStatus
                    if status.final
                }
            ),
            duration=self.order_duration.labels(name),
        )

    def cost(self, supplier: str, product: str, cents: int) -> None:
        """Count a finished order's cost; a child per (supplier, product) is bound the first time and kept."""
        child = self._order_costs.get((supplier, product))
        if child is None:
            child = self._order_costs[(supplier, product)] = self.order_cost.labels(supplier, product)
        child.inc(cents / 100)

    def refused(self, shop: str, code: str) -> None:
        """Count one refusal; a child per (shop, code) is bound the first time and kept."""
        child = self._shop_refusals.get((shop, code))
        if child is None:
            child = self._shop_refusals[(shop, code)] = self.shop_refusals.labels(shop, code)
        child.inc()

    def route(self, name: str) -> RouteMetrics:
        return RouteMetrics(name, self.http_requests, self.http_duration.labels(name))


def _final_reason(reason: Reason) -> bool:
    return reason in (
        Reason.ACCOUNT_INVALID,
        Reason.SUPPLIER_FAILED,
        Reason.NO_SUPPLIER_AVAILABLE,
        Reason.RESOLVED_BY_OPERATOR,
    )
