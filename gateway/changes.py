"""The single way an order changes: read it, apply a pure change, save with compare-and-set, tell listeners.

A change function is given the latest stored order and checks its own preconditions on it; it
returns None when they no longer hold, and nothing is saved. A save that lost a race (another
worker or instance moved the order first) is retried on a fresh read, so a change is always judged
on what the store holds. The cache of orders being worked on and the per-order locks only spare
reads and retries: the store's version check is what makes a change safe. Every save also stores
when the reconciler should next look at the order (`schedule.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final

from gateway.lifecycle import Transition
from gateway.locks import KeyedLocks
from gateway.order import Order
from gateway.schedule import CheckSchedule
from gateway.store import StaleOrder, Store

SAVE_RETRIES: Final = 5

Change = Callable[[Order], Order | None]
"""The order changed, or None when the change's preconditions no longer hold."""

ChangeListener = Callable[[Order | None, Order], None]
"""Called with (before, after) on every saved change, before None for a new order; synchronously,
so it must not block or await."""


class OrderChanges:
    """Reads, changes and saves orders one at a time per order, and tells listeners what was saved."""

    def __init__(self, store: Store, schedule: CheckSchedule, *, exclusive: bool = True) -> None:
        """`exclusive`: this process is the store's only writer, so what it saved last is the truth.

        On a store that other instances write, a remembered order may be stale at any moment (and
        would never be forgotten once another instance finished it): nothing is remembered there.
        """
        self._store = store
        self._schedule = schedule
        self._exclusive = exclusive
        self._locks = KeyedLocks()
        self._open: dict[str, Order] = {}  # latest saved version of processing orders seen here
        self._listeners: list[ChangeListener] = []

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def scheduled(self, order: Order) -> Order:
        """`order` with its next check time, as it must be stored."""
        return replace(order, check_at=self._schedule.check_at(order))

    def created(self, order: Order) -> None:
        """A new order was stored (by `Store.create_order`): listeners hear of it like of a change."""
        self._remember(order)
        for listener in self._listeners:
            listener(None, order)

    def cached(self, uid: str) -> Order | None:
        """The latest version saved here of an open order, if any; the store may know a newer one."""
        return self._open.get(uid)

    async def current(self, uid: str) -> Order | None:
        order = self._open.get(uid)
        if order is not None:
            return order
        return await self._store.get_order_by_uid(uid)

    async def update(self, uid: str, change: Change) -> Order | None:
        """Apply `change` to the latest order and save it: the saved order, or None if none was saved."""
        async with self._locks.hold(uid):
            for _ in range(SAVE_RETRIES):
                order = await self.current(uid)
                if order is None:
                    return None
                changed = change(order)
                if changed is None or changed is order:
                    return None
                try:
                    saved = await self._store.save_order(self.scheduled(changed))
                except StaleOrder:
                    self._open.pop(uid, None)  # another worker moved it: read it again
                    continue
                self._remember(saved)
                for listener in self._listeners:
                    listener(order, saved)
                return saved
            raise StaleOrder(uid, -1, -1)

    async def transition(self, uid: str, change: Callable[[Order], Transition]) -> Transition | None:
        """`update` for a lifecycle step: the transition decided on the latest order, with the saved order.

        None when no order has that uid.
        """
        decided: Transition | None = None

        def step(order: Order) -> Order | None:
            nonlocal decided
            decided = change(order)  # on a retry, the decision taken on the fresher order counts
            return None if decided.order is order else decided.order

        saved = await self.update(uid, step)
        if decided is None:
            return None
        return decided if saved is None else replace(decided, order=saved)

    def _remember(self, order: Order) -> None:
        if not self._exclusive:
            return
        if order.status.final:
            self._open.pop(order.uid, None)
        else:
            self._open[order.uid] = order
