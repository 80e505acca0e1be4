"""CONTRACT.md §11: both listeners serve an OpenAPI 3.1 document that describes every route they have.

The route test compares each running application's router with its document, both ways: a route without a
description fails it, and so does a description of a route or method that does not exist. Each document is
checked against the OpenAPI 3.1 meta-schema (schemathesis's copy), every schema in it against JSON Schema
2020-12, and its examples against their own schemas. What the listeners answer is
test_openapi_conformance.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Final

import jsonschema_rs
import orjson
import pytest
from aiohttp import ClientSession, web
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from gateway import callbacks
from gateway.app import ADMIN_RUNNER, admin_address
from gateway.openapi import DOCUMENT
from gateway.openapi.admin import admin_document
from gateway.openapi.document import Document
from gateway.openapi.shop import shop_document
from tests.e2e.harness import Deployment, Gateway, SupplierSpec

# Methods aiohttp answers on its own: HEAD beside every GET (`allow_head`), OPTIONS never registered here.
IMPLIED: Final = frozenset({"HEAD", "OPTIONS"})
# Routes registered for any method (`*`): the methods their handler takes, each described on its own.
ANY_METHOD: Final = {"/callbacks/{}": frozenset(callbacks.METHODS)}
HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
DOCUMENTS: Final[dict[str, Callable[[], Document]]] = {"shop": shop_document, "admin": admin_document}

Route = tuple[str, str]


def shape(path: str) -> str:
    """`/v1/orders/{order_id}` -> `/v1/orders/{}`: placeholders compared by place, not by name or pattern."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def registered(app: web.Application) -> set[Route]:
    routes: set[Route] = set()
    for route in app.router.routes():
        path = shape(route.resource.canonical) if route.resource is not None else "?"
        if route.method == "*":
            methods = ANY_METHOD.get(path)
            assert methods is not None, f"{path} takes any method: name the ones its handler answers"
            routes.update((method, path) for method in methods)
        elif route.method not in IMPLIED:
            routes.add((route.method, path))
    return routes


def described(document: dict[str, Any]) -> set[Route]:
    return {
        (method.upper(), shape(path))
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


async def _deployed(gateway: Gateway) -> Deployment:
    return await gateway({"fulu": SupplierSpec()})


async def test_every_route_of_both_listeners_is_described_and_nothing_else(gateway: Gateway) -> None:
    d = await _deployed(gateway)
    listeners = {"shop": d.app, "admin": d.app[ADMIN_RUNNER].app}
    for name, app in listeners.items():
        document = orjson.loads(app[DOCUMENT])
        routes, paths = registered(app), described(document)
        assert routes - paths == set(), f"{name}: routes without a description"
        assert paths - routes == set(), f"{name}: described, but no such route"


async def test_the_documents_are_served_as_built_the_admin_one_behind_the_token(gateway: Gateway) -> None:
    d = await _deployed(gateway)
    host, port = admin_address(d.app)
    async with ClientSession() as session:
        async with session.get(d.base_url + "/v1/openapi.json") as answer:
            assert (answer.status, answer.content_type) == (200, "application/json")
            assert await answer.read() == d.app[DOCUMENT] == shop_document().encode()
        admin_url = f"http://{host}:{port}/admin/openapi.json"
        async with session.get(admin_url) as refused:
            assert refused.status == 401
            assert (await refused.json())["error"]["code"] == "unauthenticated"
        async with session.get(admin_url, headers={"Authorization": "Bearer admin-token"}) as answer:
            assert (answer.status, answer.content_type) == (200, "application/json")
            assert await answer.read() == d.app[ADMIN_RUNNER].app[DOCUMENT] == admin_document().encode()


def schemas_in(node: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every Schema Object of an OpenAPI document: components', parameters', headers', media types'."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}/{key}"
            if key == "schema" or (where == "#/components/schemas"):
                yield here, value
            elif key not in {"examples", "example"}:
                yield from schemas_in(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from schemas_in(value, f"{where}/{index}")


def examples_in(node: Any, where: str = "#") -> Iterator[tuple[str, Any, Any]]:
    """(where, schema, example) for every media type, parameter and schema that shows an example."""
    if isinstance(node, dict):
        schema = node.get("schema")
        if schema is not None and "example" in node:
            yield where, schema, node["example"]
        if schema is not None:
            for name, example in node.get("examples", {}).items():
                yield f"{where}/examples/{name}", schema, example["value"]
        if where.startswith("#/components/schemas/") and where.count("/") == 3:
            for index, example in enumerate(node.get("examples", [])):
                yield f"{where}/examples/{index}", {"$ref": where}, example
        for key, value in node.items():
            if key not in ("example", "examples"):
                yield from examples_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from examples_in(value, f"{where}/{index}")


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_document_is_valid_openapi_3_1_and_its_schemas_json_schema_2020_12(name: str) -> None:
    document = orjson.loads(DOCUMENTS[name]().encode())
    problems = [f"{list(e.instance_path)}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert problems == []
    found = list(schemas_in(document))
    assert len(found) > 20
    for where, schema in found:
        assert jsonschema_rs.meta.is_valid(schema), where
    # Every reference resolves, and every link names an operation of the document.
    refs = set(re.findall(r'"\$ref":"(#/[^"]+)"', orjson.dumps(document).decode()))
    for ref in refs:
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part]
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)), "operationIds are unique"
    for op in operations:
        for reply in op["responses"].values():
            for link in reply.get("links", {}).values():
                assert link["operationId"] in ids


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_example_fits_its_schema(name: str) -> None:
    document = orjson.loads(DOCUMENTS[name]().encode())
    components = document["components"]
    shown = list(examples_in(document))
    assert len(shown) > 10
    for where, schema, example in shown:
        validator = jsonschema_rs.validator_for(
            {"components": components, "allOf": [schema]}, validate_formats=True
        )
        errors = [e.message for e in validator.iter_errors(example)]
        assert errors == [], where


def test_errors_name_only_their_codes() -> None:
    """An error response's schema pins `error.code` to the codes its status may carry for that operation."""
    document = shop_document().build()
    place = document["paths"]["/v1/orders"]["post"]["responses"]
    codes = place["409"]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]
    assert codes["code"]["enum"] == ["order_id_conflict", "duplicate_suspected"]
    statuses = {int(status) for status in place}
    assert statuses >= {200, 201, 400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503}
