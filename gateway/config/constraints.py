"""Markers carried in `Annotated[...]` on config fields: units, ranges, patterns and help text.

The loader reads them to convert and check values; the schema generator reads them to describe
the same rules in JSON Schema. One declaration, two readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin


@dataclass(frozen=True, slots=True)
class Duration:
    """A string with a unit (`250ms`, `2s`, `5m`, `24h`) held as float seconds."""


@dataclass(frozen=True, slots=True)
class Money:
    """A decimal string (`"49.30"`) held as integer minor units."""


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive numeric bounds; `None` leaves a side open."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False


@dataclass(frozen=True, slots=True)
class Pattern:
    """A regular expression the whole string must match, with a message for when it does not."""

    regex: str
    message: str


@dataclass(frozen=True, slots=True)
class MinItems:
    count: int


@dataclass(frozen=True, slots=True)
class Doc:
    """Help text for operators: shown in the JSON Schema."""

    text: str


def split_markers(hint: Any) -> tuple[Any, tuple[object, ...]]:
    """`Annotated[float, Duration(), Range(0)]` -> `(float, (Duration(), Range(0)))`; no markers: `()`."""
    if get_origin(hint) is Annotated:
        base, *markers = get_args(hint)
        return base, tuple(markers)
    return hint, ()
