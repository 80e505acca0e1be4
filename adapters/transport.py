"""HTTP-level answers every protocol reads the same way: throttling (429, Retry-After) and server errors.

A throttled submit is `throttled` (not executed, slow down); a throttled query leaves the order
`unknown` but still carries the supplier's wait; a 5xx is `unknown`, since the supplier may have
charged before failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from adapters.excerpt import excerpt
from adapters.interface import HttpReply, SupplierReply, Verdict


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After in its seconds form; the HTTP-date form would need a clock, so it is ignored."""
    value = headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def http_level_reply(
    upstream_order_id: str, reply: HttpReply, operation: Literal["submit", "query"]
) -> SupplierReply | None:
    """The reply when the HTTP status alone decides it (429, 5xx); None when the body must be read."""
    if reply.status == 429:
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            # Throttling stops a query, not the order: it stays unknown until a later query answers.
            verdict=Verdict.THROTTLED if operation == "submit" else Verdict.UNKNOWN,
            code="429",
            message=f"HTTP 429: {operation} throttled by the supplier",
            retry_after_seconds=retry_after_seconds(reply.headers),
        )
    if reply.status >= 500:
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=Verdict.UNKNOWN,
            message=f"HTTP {reply.status}: {excerpt(reply.body)}",
        )
    return None
