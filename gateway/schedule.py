"""When the reconciler should next look at an order: a pure function of the order and the settings.

Every saved change stores the order's next check time, and the store indexes it, so a sweep reads
only the orders that are due instead of every open one. A sweep claims what it takes by moving the
stored time to the end of a short lease (`Store.claim_checks`): one instance works on an order at a
time, and a dead instance's claims simply come due again. Claims spare work; safety never depends on
them (every change is a compare-and-set on the order).
"""

from __future__ import annotations

from adapters.interface import Outcome
from gateway.config.model import OrdersConfig
from gateway.lifecycle import certainly_uncharged, held_until
from gateway.order import Order, Reason


class CheckSchedule:
    """The next check of each order under the current `orders:` settings."""

    __slots__ = ("_config",)

    def __init__(self, config: OrdersConfig) -> None:
        self._config = config

    def reconfigure(self, config: OrdersConfig) -> None:
        """Take reloaded settings; orders saved before keep their time until their next change."""
        self._config = config

    @property
    def lease_seconds(self) -> float:
        """How long a claimed check is left to its claimant before another instance may take it.

        Half a sweep period: the claimant's next sweep finds it due again (a query that changed
        nothing must be asked again), and an instance that died is replaced within a period.
        """
        return self._config.reconcile_every / 2

    def check_at(self, order: Order) -> float | None:
        """The earliest moment at which a sweep has something to do for `order`; None once final."""
        if order.status.final:
            return None
        config = self._config
        until = held_until(order, config.hold_for)
        if until is not None:
            # Held for an operator: nothing to ask or route until the hold ends, and it then fails.
            return until
        due: list[float] = []
        if order.reason is not Reason.MANUAL_REVIEW:
            due.append(order.created_at + config.manual_review_after)
        last = order.last_attempt
        if last is None or certainly_uncharged(order):
            # Between attempts: routing on is normally under way; if not by then, its router is gone.
            due.append(order.updated_at + config.reconcile_after)
        elif last.outcome in (Outcome.UNKNOWN, Outcome.PROCESSING):
            ended = last.submit_ended_at if last.submit_ended_at is not None else order.updated_at
            if last.outcome is Outcome.UNKNOWN and (last.replied or last.submit_ended_at is not None):
                first = ended  # the submit ended without an answer: ask at once
            else:
                # Accepted, or still on the wire: callbacks usually settle it; ask once it has had time.
                first = last.started_at + config.reconcile_after
            # Changed since it first came due (a query answered, it was marked lost): looked at just
            # now, so asked again after a lease, not by every instance's next sweep.
            again = order.updated_at + self.lease_seconds
            due.append(first if order.updated_at <= first else max(first, again))
        return min(due)
