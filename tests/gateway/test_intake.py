"""Order request validation: every field rule, all problems at once, and the order of 400/404/403/422."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalog import Catalog
from gateway.config.loader import parse_config
from gateway.errors import ApiError, InvalidAccount, InvalidRequest, ProductNotAllowed, UnknownProduct
from gateway.intake import read_order_request

CONFIG = """
shops:
  demo: {secret: s, products: ["mobile.*", "game.qq.*"], notify_hosts: ["shop.example.com"]}
suppliers:
  fulu: {protocol: fulu, base_url: "http://127.0.0.1:9", credentials: {app_key: k, app_secret: s}}
products:
  mobile.cmcc.50:
    account: mobile_cn
    face_value: "50"
    offers: [{supplier: fulu, sku: "1", cost: "49.30"}]
  game.qq.qb10:
    account: qq
    face_value: "10"
    max_quantity: 5
    offers: [{supplier: fulu, sku: "2", cost: "9.90"}]
  game.other.id:
    account: game
    face_value: "10"
    offers: [{supplier: fulu, sku: "3", cost: "9.90"}]
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(parse_config(CONFIG, {}))


def read(catalog: Catalog, doc: Any, shop: str = "demo") -> Any:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return read_order_request(body, shop, catalog, 2.0)


def fails(catalog: Catalog, doc: Any, kind: type[ApiError]) -> ApiError:
    with pytest.raises(kind) as info:
        read(catalog, doc)
    return info.value


GOOD = {"order_id": "SHOP-1", "product": "mobile.cmcc.50", "account": "13800138000"}


def test_a_good_request_with_defaults(catalog: Catalog) -> None:
    intake = read(catalog, GOOD)
    assert intake.request.quantity == 1
    assert intake.request.notify_url is None
    assert intake.wait_seconds == 2.0


def test_all_optional_fields(catalog: Catalog) -> None:
    doc = {**GOOD, "quantity": 3, "notify_url": "https://shop.example.com/hook?x=1", "wait_seconds": 0.5}
    intake = read(catalog, doc)
    assert (intake.request.quantity, intake.request.notify_url, intake.wait_seconds) == (
        3,
        "https://shop.example.com/hook?x=1",
        0.5,
    )


@pytest.mark.parametrize(
    "body", [b"", b"{", b"not json", b'{"a":1}garbage', '{"order_id": "\xff"}'.encode("latin-1")]
)
def test_malformed_json(catalog: Catalog, body: bytes) -> None:
    error = fails(catalog, body, InvalidRequest)
    assert error.details
    assert error.details[0]["field"] == "body"


@pytest.mark.parametrize("body", [b"[]", b"1", b'"x"', b"null"])
def test_body_must_be_an_object(catalog: Catalog, body: bytes) -> None:
    fails(catalog, body, InvalidRequest)


def test_every_problem_is_reported_at_once(catalog: Catalog) -> None:
    doc = {
        "order_id": "bad id!",
        "product": 5,
        "account": ["x"],
        "quantity": True,
        "notify_url": "ftp://shop.example.com/x",
        "wait_seconds": 11,
        "colour": "red",
    }
    error = fails(catalog, doc, InvalidRequest)
    fields = sorted(d["field"] for d in error.details or [])
    assert fields == ["account", "colour", "notify_url", "order_id", "product", "quantity", "wait_seconds"]


def test_missing_required_fields(catalog: Catalog) -> None:
    error = fails(catalog, {}, InvalidRequest)
    assert {d["field"]: d["message"] for d in error.details or []} == {
        "order_id": "is required",
        "product": "is required",
        "account": "is required",
    }


@pytest.mark.parametrize("quantity", [0, 101, 1.5, "2", None])
def test_quantity_range_and_type(catalog: Catalog, quantity: object) -> None:
    fails(catalog, {**GOOD, "quantity": quantity}, InvalidRequest)


def test_quantity_limited_by_product(catalog: Catalog) -> None:
    ok = {"order_id": "Q", "product": "game.qq.qb10", "account": "10001"}
    read(catalog, {**ok, "quantity": 5})
    error = fails(catalog, {**ok, "quantity": 6}, InvalidRequest)
    assert "1 to 5" in (error.details or [{}])[0]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/x",
        "http://user:pw@shop.example.com/",
        "mailto:x@shop.example.com",
        "https://",
        "http://shop.example.com:99999/",
    ],
)
def test_notify_url_rules(catalog: Catalog, url: str) -> None:
    error = fails(catalog, {**GOOD, "notify_url": url}, InvalidRequest)
    assert [detail["field"] for detail in error.details or []] == ["notify_url"]


def test_unknown_product_is_404_after_fields_are_fine(catalog: Catalog) -> None:
    fails(catalog, {**GOOD, "product": "mobile.cmcc.51"}, UnknownProduct)


def test_product_not_allowed_for_shop(catalog: Catalog) -> None:
    fails(catalog, {**GOOD, "product": "game.other.id", "account": "abc"}, ProductNotAllowed)


@pytest.mark.parametrize(
    ("product", "account"),
    [
        ("mobile.cmcc.50", "12800138000"),
        ("mobile.cmcc.50", "1380013800"),
        ("mobile.cmcc.50", " 13800138000"),
        ("mobile.cmcc.50", "+8613800138000"),
        ("game.qq.qb10", "01234"),
        ("game.qq.qb10", "1234"),
        ("game.qq.qb10", "1234567890123"),
    ],
)
def test_bad_accounts_are_422_and_never_normalised(catalog: Catalog, product: str, account: str) -> None:
    error = fails(catalog, {"order_id": "A", "product": product, "account": account}, InvalidAccount)
    assert error.details
    assert error.details[0]["field"] == "account"


@pytest.mark.parametrize("stream", ["events", "ws"])
def test_the_event_streams_names_are_not_order_ids(catalog: Catalog, stream: str) -> None:
    error = fails(catalog, {**GOOD, "order_id": stream}, InvalidRequest)
    assert [d["field"] for d in error.details or []] == ["order_id"]
    read(catalog, {**GOOD, "order_id": f"{stream}-1"})


@given(st.text(st.characters(categories=["Nd"], exclude_characters="0123456789"), min_size=1, max_size=9))
def test_unicode_digits_in_an_account_are_422_invalid_account(catalog: Catalog, digits: str) -> None:
    # CONTRACT.md §7: full-width or other Unicode digits are invalid_account, never normalised.
    mobile = "138" + digits + "0" * (8 - len(digits)) if len(digits) <= 8 else "13" + digits
    qq = "1" + digits + "0" * max(0, 4 - len(digits))
    for product, account in (("mobile.cmcc.50", mobile), ("game.qq.qb10", qq)):
        error = fails(catalog, {"order_id": "A", "product": product, "account": account}, InvalidAccount)
        assert error.code == "invalid_account"
        assert error.http_status == 422
