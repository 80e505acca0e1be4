"""A supplier's prepaid balance as this process knows it (CONTRACT.md §9): the arithmetic only.

The last balance read, less the cost of submits sent since that read (the read cannot show them
yet). No I/O: `gateway.balancewatch` reads balances, `gateway.suppliers` holds and releases costs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable


class SupplierBalance:
    """One supplier's balance as this process knows it.

    Every admitted submit holds its cost (`hold`) until the supplier shows it was not charged
    (`release`: refused, declined, never sent) or a later read reflects it. A read reflects the
    submits answered before the read was asked (`begin_read`): suppliers take the money when they
    accept. Submits still under way then stay held, so for a moment they may count twice: the
    estimate errs on the side of not sending an order the supplier cannot pay for. An attempt
    accepted and later failed stays held until the next read, which shows the refund.
    """

    __slots__ = (
        "_answered",
        "_held",
        "_holds",
        "_listener",
        "_tokens",
        "cents",
        "checked_at",
        "stale",
        "wanted",
    )

    def __init__(self) -> None:
        self.cents: int | None = None  # last read; None until the first
        self.checked_at: float | None = None  # Unix seconds of the last successful read
        self.stale = False  # the last poll could not read the balance
        self.wanted = False  # a re-poll was asked for (a "balance insufficient" refusal)
        self._holds: dict[int, int] = {}
        # The sum of `_holds`, kept as they change: every admit asks, and thousands of submits may
        # be held between two reads.
        self._held = 0
        self._answered: set[int] = set()
        self._tokens = itertools.count(1)
        self._listener: Callable[[], None] | None = None

    @property
    def available_cents(self) -> int | None:
        """The last read less what submits since then may have spent; None while never read."""
        if self.cents is None:
            return None
        return self.cents - self._held

    def covers(self, cents: int) -> bool:
        """Whether `cents` may be spent: always while the balance was never read."""
        available = self.available_cents
        return available is None or available >= cents

    def low(self, mark_cents: int | None) -> bool:
        return mark_cents is not None and self.cents is not None and self.cents < mark_cents

    def hold(self, cents: int) -> int:
        """Count `cents` as spent from now on; the token goes to `answered` or `release`."""
        token = next(self._tokens)
        self._holds[token] = cents
        self._held += cents
        return token

    def answered(self, token: int) -> None:
        """The submit holding `token` has reached the supplier (or may have): a later read shows it."""
        if token in self._holds:
            self._answered.add(token)

    def release(self, token: int) -> None:
        """The submit holding `token` certainly charged nothing."""
        self._held -= self._holds.pop(token, 0)
        self._answered.discard(token)

    def begin_read(self) -> frozenset[int]:
        """The holds a read asked for now will reflect: pass them to `read`."""
        return frozenset(self._answered)

    def read(self, cents: int, at: float, reflected: frozenset[int]) -> None:
        self.cents = cents
        self.checked_at = at
        self.stale = False
        for token in reflected:
            self.release(token)

    def request_check(self) -> None:
        """Ask the watch for a read now (the supplier said its balance is short)."""
        self.wanted = True
        if self._listener is not None:
            self._listener()

    def listen(self, listener: Callable[[], None]) -> None:
        self._listener = listener
