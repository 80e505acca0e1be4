"""The JSON Schema (draft 2020-12) of `gateway.yaml`: pydantic's schema of the model, as the file is written.

Regenerate with `python -m gateway.config.schema > config/gateway.schema.json`; a test fails while
the checked-in copy is stale. Describes the model only: the loader stays the authority on values.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, Final

from pydantic import PlainSerializer
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gateway.config.loader import bounds_text, unwrap
from gateway.config.model import MONEY_PATTERN, RULES, GatewayConfig, Section

__all__ = ["DIALECT", "MONEY_PATTERN", "json_schema", "main", "schema_text"]

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# The schema describes the file as written, before `${NAME}` expansion: a string holding a
# reference passes here and is checked by the loader once expanded.
_REFERENCE: Final = r"\$\{"


class _WithoutDefaults(GenerateJsonSchema):
    """pydantic's generator, minus defaults: `json_schema` writes them as the file would (2.0 -> "2s")."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])


def json_schema() -> dict[str, Any]:
    """The schema of a whole `gateway.yaml`, nested sections under `$defs`."""
    schema = GatewayConfig.model_json_schema(schema_generator=_WithoutDefaults)
    definitions = schema.pop("$defs")
    for section in Section.__subclasses__():
        node = schema if section is GatewayConfig else definitions[section.__name__]
        _add_defaults_and_bounds(section, node["properties"])
    enums = {name: node["enum"] for name, node in definitions.items() if "enum" in node}
    written = _as_written(
        {**schema, "$defs": {k: v for k, v in definitions.items() if k not in enums}}, enums
    )
    return {
        "$schema": DIALECT,
        "title": "gateway.yaml",
        "description": "Configuration of the supplier gateway. Generated from gateway/config/model.py: "
        "do not edit by hand.",
        **written,
    }


def schema_text() -> str:
    """The schema as checked in: sorted keys, two-space indent, trailing newline."""
    return json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(schema_text())


def _add_defaults_and_bounds(section: type[Section], properties: dict[str, Any]) -> None:
    """Defaults as an operator writes them, and the bounds of durations and money, which JSON Schema
    cannot state for strings, in words."""
    optional = {name for name, field in section.model_fields.items() if not field.is_required()}
    defaults = section.model_construct().model_dump(mode="json", include=optional)
    for name, field in section.model_fields.items():
        schema = properties[name]
        if name in defaults:
            schema["default"] = _plain_numbers(defaults[name])
        _, metadata = unwrap(field.annotation)
        metadata = (*field.metadata, *metadata)
        bounds = bounds_text(metadata)
        if bounds and any(isinstance(item, PlainSerializer) for item in metadata):
            schema["description"] = "; ".join(filter(None, [schema.get("description"), f"must be {bounds}"]))


def _as_written(node: Any, enums: Mapping[str, list[str]], *, names: bool = False) -> Any:
    """pydantic's schema reworked for the file as written, before `${NAME}` expansion.

    Titles (the field names again) go; enums are inlined and, like every value pattern, also take
    a reference; a pattern's rule joins the description; map keys' patterns become propertyNames.
    """
    if isinstance(node, list):
        return [_as_written(item, enums) for item in node]
    if not isinstance(node, dict):
        return node
    if names:  # a map of property or definition names to schemas, not a schema
        return {key: _as_written(value, enums) for key, value in node.items()}
    result = {
        key: _as_written(value, enums, names=key in ("properties", "patternProperties", "$defs"))
        for key, value in node.items()
        if key != "title"
    }
    if "patternProperties" in result:
        ((key_pattern, value_schema),) = result.pop("patternProperties").items()
        result.update(propertyNames={"pattern": key_pattern}, additionalProperties=value_schema)
    if "description" in result:  # docstrings wrap lines; the schema's help text is one line
        result["description"] = " ".join(result["description"].split())
    if "pattern" in result:
        rule = RULES.get(result["pattern"])
        result["pattern"] = f"{result['pattern']}|{_REFERENCE}"
        if rule:
            result["description"] = "; ".join(filter(None, [result.get("description"), rule]))
    name = str(result.get("$ref", "")).removeprefix("#/$defs/")
    if name in enums:
        del result["$ref"]
        result.update(type="string", anyOf=[{"enum": enums[name]}, {"pattern": _REFERENCE}])
    return result


def _plain_numbers(value: Any) -> Any:
    """`rate: 100`, as an operator writes it, rather than 100.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(item) for item in value]
    return value


if __name__ == "__main__":
    main()
