"""Blocked accounts (CONTRACT.md §7): an operator's block of one account for the products a glob matches.

A value type and its stored form only; the store keeps blocks, the admin API makes them, the shop API obeys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountBlock:
    """Orders for `account` of a product matching `product` are refused until `until` (None: until unblocked).

    Blocks are not per shop: an operator blocks an account for the whole gateway. One block per
    (account, product glob); a new one for the same pair replaces it.
    """

    account: str
    product: str = "*"
    until: float | None = None
    note: str = ""
    created_at: float
    operator: str | None = None

    def active(self, now: float) -> bool:
        return self.until is None or self.until > now

    def covers(self, product: str, now: float) -> bool:
        return self.active(now) and fnmatchcase(product, self.product)


def block_document(block: AccountBlock) -> dict[str, Any]:
    """The stored form, beside its account and product (which name where it is stored)."""
    return {
        "until": block.until,
        "note": block.note,
        "created_at": block.created_at,
        "operator": block.operator,
    }


def block_from(account: str, product: str, doc: Mapping[str, Any]) -> AccountBlock:
    return AccountBlock(
        account=account,
        product=product,
        until=doc["until"],
        note=doc["note"],
        created_at=doc["created_at"],
        operator=doc["operator"],
    )


def listed(blocks: list[AccountBlock]) -> list[AccountBlock]:
    """In the order every store lists them: by account, then product glob."""
    return sorted(blocks, key=lambda b: (b.account, b.product))
