"""HTTP-level answers every protocol reads the same way: throttling (429, Retry-After) and server errors.

A throttled submit is `throttled` (not executed, slow down); a throttled query leaves the order
`unknown` but still carries the supplier's wait; a 5xx is `unknown`, since the supplier may have
charged before failing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

from adapters.excerpt import excerpt
from adapters.interface import HttpReply, SupplierReply, Verdict

MAX_RETRY_AFTER_SECONDS: Final = 300.0
"""The longest pause a supplier's Retry-After may impose. A pause stops submits and reconciliation
queries alike, so one wrong header (a year, 1e300) must not silence a supplier for longer."""

# RFC 9110 delay-seconds is 1*DIGIT; a fraction is tolerated. ASCII digits only: `float` would also
# take "nan", "inf", "-1", "1e9", "1_0" and non-ASCII digits, none of which a supplier means.
_DELAY_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After in its seconds form, at most `MAX_RETRY_AFTER_SECONDS`; None when absent or unreadable.

    The HTTP-date form would need a clock, so it is ignored like any other text: the caller then
    backs off on its own schedule. Never raises, whatever the supplier sends.
    """
    value: object = headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")  # HTTP's optional whitespace, nothing wider
    if _DELAY_SECONDS.fullmatch(text) is None:
        return None
    # A long run of digits parses to a huge float or inf: clamped like any other long wait.
    return min(float(text), MAX_RETRY_AFTER_SECONDS)


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
