"""Short, printable quotes of supplier bytes for messages and logs, so garbage is visible but bounded."""

from __future__ import annotations

EXCERPT_CHARS = 120


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The first `limit` characters of `body`, undecodable bytes escaped, whitespace folded."""
    text = body[: limit * 4].decode("utf-8", errors="backslashreplace")
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit or len(body) > limit * 4 else "")
