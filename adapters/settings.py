"""Checks every adapter makes of its supplier's settings before it builds anything.

Problems are collected, not raised one by one, so `InvalidSettings` can list them all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from adapters.interface import AdapterSettings


def settings_problems(
    settings: AdapterSettings,
    credential_keys: Sequence[str],
    credential_problem: Callable[[str], str | None] = lambda value: None,
) -> list[tuple[str, str]]:
    """Every problem with `settings` as (key, message); empty when there is none.

    Each credential in `credential_keys` must be present and non-empty, and pass the protocol's own
    `credential_problem` (which names what is wrong, or returns None); `base_url` must be a plain
    http(s) URL.
    """
    problems: list[tuple[str, str]] = []
    for key in credential_keys:
        value = settings.credentials.get(key)
        if value is None:
            problems.append((f"credentials.{key}", "missing"))
        elif not value:
            problems.append((f"credentials.{key}", "empty"))
        elif (problem := credential_problem(value)) is not None:
            problems.append((f"credentials.{key}", problem))
    parts = urlsplit(settings.base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        problems.append(("base_url", "must be an http:// or https:// URL without query or fragment"))
    return problems
