"""Code tables: a supplier's codes mapped to verdicts, defaults overridden per supplier.

A code nobody listed means `unknown`, never failed: only a query may settle it.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.interface import Verdict


class CodeTable:
    """A protocol's default code table with one supplier's `codes:` overrides laid over it."""

    __slots__ = ("_table",)

    def __init__(self, defaults: Mapping[str, Verdict], overrides: Mapping[str, Verdict]) -> None:
        self._table: dict[str, Verdict] = {**defaults, **overrides}

    def verdict(self, code: str) -> Verdict:
        return self._table.get(code, Verdict.UNKNOWN)

    def __contains__(self, code: object) -> bool:
        return code in self._table
