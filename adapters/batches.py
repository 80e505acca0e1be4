"""How many orders one query may name, for the protocols whose queries name exactly one.

Callers batch by `max_query_batch`; a query of any other size is a caller's bug, so it raises.
"""

from __future__ import annotations

from collections.abc import Sequence


def single_order(upstream_order_ids: Sequence[str], protocol: str) -> str:
    """The one id of a query in `protocol`, which asks about one order at a time; else `ValueError`."""
    if len(upstream_order_ids) != 1:
        raise ValueError(f"{protocol} queries one order at a time, not {len(upstream_order_ids)}")
    return upstream_order_ids[0]
