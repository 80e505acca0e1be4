"""The JSON Schema (draft 2020-12) of `gateway.yaml`, generated from the typed model and its markers.

Regenerate with `python -m gateway.config.schema > config/gateway.schema.json`; a test fails while
the checked-in copy is stale. Describes the model only: the loader stays the authority on values.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from collections.abc import Mapping
from enum import StrEnum
from types import UnionType
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

from gateway.config.constraints import Doc, Duration, MinItems, Money, Pattern, Range, split_markers
from gateway.config.loader import bounds_text
from gateway.config.model import GatewayConfig
from gateway.duration import DURATION_PATTERN, format_duration
from gateway.money import format_money
from gateway.secret import Secret

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# The strings gateway.money.parse_money accepts; a test holds the two to the same answers.
MONEY_PATTERN: Final = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"
# The schema describes the file as written, before `${NAME}` expansion: a string holding a
# reference passes here and is checked by the loader once expanded.
_REFERENCE: Final = r"\$\{"

_SHARED: Final[Mapping[str, dict[str, Any]]] = {
    "Duration": {
        "type": "string",
        "pattern": f"^(?:{DURATION_PATTERN})$|{_REFERENCE}",
        "description": "A duration with a unit: ms, s, m or h (250ms, 2s, 1.5s, 5m, 24h)",
    },
    "Money": {
        "type": "string",
        "pattern": f"{MONEY_PATTERN}|{_REFERENCE}",
        "description": 'A decimal amount in a quoted string, at most two decimals ("49.30")',
    },
}


def json_schema() -> dict[str, Any]:
    """The schema of a whole `gateway.yaml`, nested sections under `$defs`."""
    definitions: dict[str, Any] = {}
    root = _object(GatewayConfig, definitions)
    root.pop("description", None)
    return {
        "$schema": DIALECT,
        "title": "gateway.yaml",
        "description": "Configuration of the supplier gateway. Generated from gateway/config/model.py: "
        "do not edit by hand.",
        **root,
        "$defs": definitions,
    }


def schema_text() -> str:
    """The schema as checked in: sorted keys, two-space indent, trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(schema_text())


def _object(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        base, markers = split_markers(hints[field.name])
        schema = _value(base, markers, definitions)
        description = _description(markers)
        if description:
            schema["description"] = description
        if field.default is not dataclasses.MISSING:
            schema["default"] = _as_yaml(field.default, base, markers)
        elif field.default_factory is not dataclasses.MISSING:
            schema["default"] = _as_yaml(field.default_factory(), base, markers)
        else:
            required.append(field.name)
        properties[field.name] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        result["required"] = required
    doc = inspect.getdoc(cls)
    # dataclass() writes a signature as the docstring of classes that have none: not help text.
    if doc and not doc.startswith(f"{cls.__name__}("):
        result["description"] = doc
    return result


def _value(base: Any, markers: tuple[object, ...], definitions: dict[str, Any]) -> dict[str, Any]:
    """The schema of one value, without its description or default."""
    origin = get_origin(base)
    if origin is Union or origin is UnionType:
        (arm,) = (arm for arm in get_args(base) if arm is not type(None))
        return {"anyOf": [_value(arm, markers, definitions), {"type": "null"}]}
    if isinstance(base, type) and dataclasses.is_dataclass(base):
        if base.__name__ not in definitions:
            definitions[base.__name__] = {}  # claimed before recursing, in case a class contains itself
            definitions[base.__name__] = _object(base, definitions)
        return {"$ref": f"#/$defs/{base.__name__}"}
    if origin is Mapping:
        key_hint, value_hint = get_args(base)
        _, key_markers = split_markers(key_hint)
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": _value(*split_markers(value_hint), definitions),
        }
        for marker in key_markers:
            if isinstance(marker, Pattern):
                schema["propertyNames"] = {"pattern": _anchored(marker.regex)}
        return schema
    if origin is tuple:
        item_hint, _ = get_args(base)
        schema = {"type": "array", "items": _value(*split_markers(item_hint), definitions)}
        for marker in markers:
            if isinstance(marker, MinItems):
                schema["minItems"] = marker.count
        return schema
    for shared, marker_type in (("Duration", Duration), ("Money", Money)):
        if any(isinstance(marker, marker_type) for marker in markers):
            definitions.setdefault(shared, dict(_SHARED[shared]))
            return {"$ref": f"#/$defs/{shared}"}
    if isinstance(base, type) and issubclass(base, StrEnum):
        members = [member.value for member in base]
        return {"type": "string", "anyOf": [{"enum": members}, {"pattern": _REFERENCE}]}
    if base is bool:
        return {"type": "boolean"}
    if base is int or base is float:
        schema = {"type": "integer" if base is int else "number"}
        for marker in markers:
            if isinstance(marker, Range):
                schema.update(_bounds(marker))
        return schema
    if base is str or base is Secret:
        schema = {"type": "string"}
        for marker in markers:
            if isinstance(marker, Pattern):
                schema["pattern"] = _value_pattern(marker.regex)
        return schema
    raise TypeError(f"no JSON Schema for config type {base!r}")


def _description(markers: tuple[object, ...]) -> str:
    """Help text, plus the rules JSON Schema cannot state itself (bounds of durations and money)."""
    parts = [marker.text for marker in markers if isinstance(marker, Doc)]
    parts.extend(marker.message for marker in markers if isinstance(marker, Pattern))
    unit = next((marker for marker in markers if isinstance(marker, Duration | Money)), None)
    if unit is not None:
        render = format_duration if isinstance(unit, Duration) else _money
        parts.extend(
            f"must be {bounds_text(marker, render)}" for marker in markers if isinstance(marker, Range)
        )
    return "; ".join(parts)


def _bounds(bounds: Range) -> dict[str, float]:
    schema: dict[str, float] = {}
    if bounds.minimum is not None:
        schema["exclusiveMinimum" if bounds.exclusive_minimum else "minimum"] = bounds.minimum
    if bounds.maximum is not None:
        schema["maximum"] = bounds.maximum
    return schema


def _as_yaml(value: object, base: Any, markers: tuple[object, ...]) -> Any:
    """A default as an operator would write it in `gateway.yaml`: 2.0 -> "2s", 4930 -> "49.30"."""
    if value is None:
        return None
    origin = get_origin(base)
    if origin is Union or origin is UnionType:
        (arm,) = (arm for arm in get_args(base) if arm is not type(None))
        return _as_yaml(value, arm, markers)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = get_type_hints(type(value), include_extras=True)
        return {
            field.name: _as_yaml(getattr(value, field.name), *split_markers(hints[field.name]))
            for field in dataclasses.fields(value)
        }
    if origin is Mapping and isinstance(value, Mapping):
        value_hint = get_args(base)[1]
        return {key: _as_yaml(item, *split_markers(value_hint)) for key, item in value.items()}
    if origin is tuple and isinstance(value, tuple):
        item_hint = get_args(base)[0]
        return [_as_yaml(item, *split_markers(item_hint)) for item in value]
    if isinstance(value, Secret):
        if value:
            raise ValueError("a non-empty default secret would be published in the schema")
        return ""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float) and any(isinstance(marker, Duration) for marker in markers):
        return format_duration(value)
    if isinstance(value, int) and any(isinstance(marker, Money) for marker in markers):
        return format_money(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # `rate: 100`, as an operator writes it
    return value


def _anchored(regex: str) -> str:
    # JSON Schema patterns search anywhere in the string; the model's patterns must match whole.
    return f"^(?:{regex})$"


def _value_pattern(regex: str) -> str:
    return f"{_anchored(regex)}|{_REFERENCE}"


def _money(cents: float) -> str:
    return format_money(int(cents))


if __name__ == "__main__":
    main()
