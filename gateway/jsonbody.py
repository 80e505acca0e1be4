"""A shop request's JSON body: the object it must be, and the fields it must not have, as API errors.

Pure: bytes in, a dict or `InvalidRequest` out; what the fields mean is each reader's own.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

import orjson

from gateway.errors import InvalidRequest


def json_object(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object, or `InvalidRequest` saying why it is not one (the field `body`)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "body is not valid JSON", details=[{"field": "body", "message": str(exc)}]
        ) from None
    if not isinstance(doc, dict):
        raise InvalidRequest(
            "body must be a JSON object", details=[{"field": "body", "message": "must be an object"}]
        )
    return doc


def unknown_fields(doc: dict[str, Any], known: Set[str]) -> list[dict[str, str]]:
    """A problem for each field of `doc` not in `known`, in name order."""
    return [{"field": name, "message": "is not a known field"} for name in sorted(doc.keys() - known)]
