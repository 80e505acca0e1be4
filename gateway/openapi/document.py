"""An OpenAPI 3.1 document built from operations: schemas from pydantic models, errors from the error tree.

Knows the shape of OpenAPI, not any route: `shop.py` and `admin.py` say what each listener answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway.errors import ApiError, InvalidRequest
from gateway.openapi.models import Error

OPENAPI_VERSION: Final = "3.1.0"
SCHEMAS: Final = "#/components/schemas/"
JSON: Final = "application/json"
# The statuses whose codes may say when to come back (rate_limited, no_supplier_available, store_unavailable).
RETRY_STATUSES: Final = frozenset({429, 503})
RETRY_AFTER: Final = {
    "description": "seconds until the request may succeed when sent again unchanged",
    "schema": {"type": "integer", "minimum": 0},
}

Schema = dict[str, Any]
# What the HTTP server (aiohttp) answers before any route sees the request: no operation can describe it.
HTTP_LIMITS: Final = (
    "Before any route: a request line or a header longer than 8190 bytes is refused `400` in plain text "
    "by the HTTP server; a method a path does not take is `405 method_not_allowed` (with `Allow`), a path "
    "that names no route `404 not_found`."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One documented answer: a JSON body described by `model`, or other `content` (media type -> object)."""

    description: str
    model: type[BaseModel] | None = None
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)
    links: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A request body: JSON described by `model`, and/or other `content`."""

    description: str
    required: bool = True
    model: type[BaseModel] | None = None
    content: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One method on one path, with every answer it gives: `replies` by status, `errors` with when each comes.

    `security` None takes the document's default; an empty list says the operation needs no credential.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    tags: tuple[str, ...]
    description: str = ""
    parameters: Sequence[Schema] = ()
    payload: Payload | None = None
    replies: Mapping[int, Reply] = field(default_factory=dict)
    errors: Mapping[type[ApiError], str] = field(default_factory=dict)
    security: Sequence[Mapping[str, list[str]]] | None = None
    # Models that only `content` written by hand refers to (with `ref`), such as an event stream's events.
    models: Sequence[type[BaseModel]] = ()


def parameter(
    location: str, name: str, schema: Schema, description: str, *, required: bool = False, **more: Any
) -> Schema:
    """A path, query or header parameter; path parameters are always required."""
    return {
        "name": name,
        "in": location,
        "description": description,
        "required": required or location == "path",
        "schema": schema,
        **more,
    }


def ref(model: type[BaseModel]) -> Schema:
    return {"$ref": f"{SCHEMAS}{model.__name__}"}


def _example_error(error: type[ApiError], when: str) -> Schema:
    body: Schema = {"code": error.code, "message": when}
    if error is InvalidRequest:
        body["details"] = [{"field": "quantity", "message": "must be an integer from 1 to 100"}]
    return {"error": body}


def error_replies(errors: Mapping[type[ApiError], str]) -> dict[str, Schema]:
    """The error responses of an operation, one per status, each naming the codes it may carry.

    The schema pins `error.code` to those codes, so an answer with any other code does not fit it.
    """
    by_status: dict[int, list[tuple[type[ApiError], str]]] = {}
    for error, when in errors.items():
        by_status.setdefault(error.http_status, []).append((error, when))
    replies: dict[str, Schema] = {}
    for status, kinds in sorted(by_status.items()):
        codes = list(dict.fromkeys(error.code for error, _ in kinds))
        schema = {**ref(Error), "properties": {"error": {"properties": {"code": {"enum": codes}}}}}
        reply: Schema = {"description": "; ".join(f"`{error.code}`: {when}" for error, when in kinds)}
        if status in RETRY_STATUSES:
            reply["headers"] = {"Retry-After": RETRY_AFTER}
        replies[str(status)] = {
            **reply,
            "content": {
                JSON: {
                    "schema": schema,
                    "examples": {error.code: {"value": _example_error(error, when)} for error, when in kinds},
                }
            },
        }
    return replies


class Document:
    """The operations of one listener, then `build()` into the OpenAPI document (a JSON-ready dict)."""

    def __init__(
        self,
        *,
        title: str,
        version: str,
        description: str,
        security_schemes: Mapping[str, Schema],
        security: Sequence[Mapping[str, list[str]]],
        tags: Mapping[str, str],
    ) -> None:
        self._info = {"title": title, "version": version, "description": description}
        self._security_schemes = dict(security_schemes)
        self._security = list(security)
        self._tags = dict(tags)
        self._operations: list[Operation] = []

    def add(self, *operations: Operation) -> None:
        self._operations.extend(operations)

    def build(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for operation in self._operations:
            methods = paths.setdefault(operation.path, {})
            if operation.method.lower() in methods:
                raise ValueError(f"{operation.method} {operation.path} is described twice")
            methods[operation.method.lower()] = self._operation(operation)
        return {
            "openapi": OPENAPI_VERSION,
            "info": self._info,
            "tags": [{"name": name, "description": text} for name, text in self._tags.items()],
            "security": self._security,
            "paths": paths,
            "components": {"schemas": self._schemas(), "securitySchemes": self._security_schemes},
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.build(), option=orjson.OPT_INDENT_2)

    def _operation(self, operation: Operation) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "operationId": operation.operation_id,
            "summary": operation.summary,
            "tags": list(operation.tags),
        }
        if operation.description:
            doc["description"] = operation.description
        if operation.security is not None:
            doc["security"] = [dict(requirement) for requirement in operation.security]
        if operation.parameters:
            doc["parameters"] = list(operation.parameters)
        if operation.payload is not None:
            doc["requestBody"] = _payload(operation.payload)
        responses = {str(status): _reply(reply) for status, reply in sorted(operation.replies.items())}
        errors = error_replies(operation.errors)
        overlap = sorted(responses.keys() & errors.keys())
        if overlap:
            raise ValueError(f"{operation.method} {operation.path}: {overlap} are both replies and errors")
        doc["responses"] = {**responses, **errors}
        return dict(sorted(doc.items(), key=lambda item: _KEY_ORDER.index(item[0])))

    def _schemas(self) -> dict[str, Schema]:
        """Every model the operations name, and every model those name, from pydantic."""
        wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Error, "serialization"): None}
        for operation in self._operations:
            if operation.payload is not None and operation.payload.model is not None:
                wanted[(operation.payload.model, "validation")] = None
            for reply in operation.replies.values():
                if reply.model is not None:
                    wanted[(reply.model, "serialization")] = None
            for model in operation.models:
                wanted[(model, "serialization")] = None
        _, top = models_json_schema(list(wanted), ref_template=SCHEMAS + "{model}")
        schemas: dict[str, Schema] = top.get("$defs", {})
        return dict(sorted(schemas.items()))


_KEY_ORDER: Final = (
    "operationId",
    "summary",
    "description",
    "tags",
    "security",
    "parameters",
    "requestBody",
    "responses",
)


def _payload(payload: Payload) -> Schema:
    content: dict[str, Schema] = {}
    if payload.model is not None:
        content[JSON] = {"schema": ref(payload.model), **_examples(payload.model)}
    content.update(payload.content)
    return {"description": payload.description, "required": payload.required, "content": content}


def _reply(reply: Reply) -> Schema:
    doc: Schema = {"description": reply.description}
    if reply.headers:
        doc["headers"] = dict(reply.headers)
    content: dict[str, Schema] = {}
    if reply.model is not None:
        content[JSON] = {"schema": ref(reply.model), **_examples(reply.model)}
    content.update(reply.content)
    if content:
        doc["content"] = content
    if reply.links:
        doc["links"] = dict(reply.links)
    return doc


def _examples(model: type[BaseModel]) -> Schema:
    """The model's own examples (CONTRACT.md's), as the media type's `example`, which tools show first."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return {"example": examples[0]} if isinstance(examples, list) and examples else {}
