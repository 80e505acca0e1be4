"""A simulated supplier's prepaid account: the balance charges draw on, top-ups, and its history.

Owns the money only: which requests charge or refund is the engine's decision, and no protocol
is spoken here. Top-ups are applied lazily from the clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clock import Clock


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceRead:
    """One answered balance call."""

    at: float  # monotonic
    balance_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceRefusal:
    """One submit refused because its cost was beyond the balance (nothing charged)."""

    at: float  # monotonic
    upstream_order_id: str
    cost_cents: int
    balance_cents: int


class PrepaidAccount:
    """The balance in cents, with `top_up_cents` added every `top_up_every` seconds of the clock.

    Top-ups count from the account's creation, so the balance at any moment depends only on what
    was charged and refunded and on the clock, never on when someone looked.
    """

    __slots__ = ("_balance", "_clock", "_every", "_since", "_top_up", "_topped", "reads", "refusals")

    def __init__(
        self,
        balance_cents: int,
        clock: Clock,
        *,
        top_up_cents: int = 0,
        top_up_every: float | None = None,
    ) -> None:
        self._balance = balance_cents
        self._clock = clock
        self._top_up = top_up_cents
        self._every = top_up_every
        self._since = clock.monotonic()
        self._topped = 0
        self.reads: list[BalanceRead] = []
        self.refusals: list[BalanceRefusal] = []

    @property
    def balance_cents(self) -> int:
        self._apply_top_ups()
        return self._balance

    def set(self, balance_cents: int) -> None:
        """Replace the balance, as if someone else spent or paid in (for tests and demos)."""
        self._apply_top_ups()
        self._balance = balance_cents

    def read(self) -> int:
        """The balance as a balance call reports it; the call is remembered in `reads`."""
        balance = self.balance_cents
        self.reads.append(BalanceRead(at=self._clock.monotonic(), balance_cents=balance))
        return balance

    def charge(self, upstream_order_id: str, cost_cents: int) -> bool:
        """Take `cost_cents` if the balance covers it; otherwise take nothing, remember the refusal."""
        balance = self.balance_cents
        if cost_cents > balance:
            self.refusals.append(
                BalanceRefusal(
                    at=self._clock.monotonic(),
                    upstream_order_id=upstream_order_id,
                    cost_cents=cost_cents,
                    balance_cents=balance,
                )
            )
            return False
        self._balance = balance - cost_cents
        return True

    def refund(self, cents: int) -> None:
        """Give back what a failed (or partly delivered) order did not use."""
        self._apply_top_ups()
        self._balance += cents

    def _apply_top_ups(self) -> None:
        if self._every is None or self._top_up <= 0:
            return
        due = int((self._clock.monotonic() - self._since) // self._every)
        if due > self._topped:
            self._balance += (due - self._topped) * self._top_up
            self._topped = due
