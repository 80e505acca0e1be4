"""Reading a shop's order request: JSON, field rules, product, permission, account; every problem at once.

Pure: takes bytes and the catalog, returns a validated request or raises an `ApiError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from gateway.accounts import account_problem
from gateway.catalog import Catalog
from gateway.config.model import ProductConfig
from gateway.errors import InvalidAccount, InvalidRequest, ProductNotAllowed, UnknownProduct
from gateway.order import OrderRequest

ORDER_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# GET /v1/orders/events is the live stream, so an order with that id could never be read back.
RESERVED_ORDER_IDS: Final = frozenset({"events"})
FIELDS: Final = frozenset({"order_id", "product", "account", "quantity", "notify_url", "wait_seconds"})
MAX_WAIT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Intake:
    request: OrderRequest
    product: ProductConfig
    wait_seconds: float


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(doc: dict[str, Any], name: str, problems: list[dict[str, str]], *, required: bool) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            problems.append({"field": name, "message": "is required"})
        return None
    if not isinstance(value, str):
        problems.append({"field": name, "message": "must be a string"})
        return None
    return value


def read_order_request(body: bytes, shop: str, catalog: Catalog, default_wait_seconds: float) -> Intake:
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

    problems: list[dict[str, str]] = [
        {"field": name, "message": "is not a known field"} for name in sorted(doc.keys() - FIELDS)
    ]
    order_id = _string(doc, "order_id", problems, required=True)
    if order_id is not None and ORDER_ID.fullmatch(order_id) is None:
        problems.append({"field": "order_id", "message": "must be 1 to 64 of letters, digits, _ . and -"})
    elif order_id in RESERVED_ORDER_IDS:
        problems.append(
            {"field": "order_id", "message": f"{order_id!r} is reserved: it names the event stream"}
        )
    product_name = _string(doc, "product", problems, required=True)
    account = _string(doc, "account", problems, required=True)
    product = catalog.products.get(product_name) if product_name is not None else None

    quantity = doc.get("quantity", 1)
    max_quantity = product.max_quantity if product is not None else 100
    if not _is_int(quantity) or not 1 <= quantity <= max_quantity:
        problems.append({"field": "quantity", "message": f"must be an integer from 1 to {max_quantity}"})

    notify_url = _string(doc, "notify_url", problems, required=False)
    if notify_url is not None:
        problem = _notify_url_problem(notify_url, shop, catalog)
        if problem is not None:
            problems.append({"field": "notify_url", "message": problem})

    wait = doc.get("wait_seconds", default_wait_seconds)
    if not (_is_int(wait) or isinstance(wait, float)) or not 0 <= wait <= MAX_WAIT_SECONDS:
        problems.append({"field": "wait_seconds", "message": "must be a number from 0 to 10"})

    if problems or order_id is None or product_name is None or account is None:
        raise InvalidRequest("the request has invalid fields", details=problems)

    if product is None:
        raise UnknownProduct(f"no product {product_name!r}")
    if not catalog.may_sell(shop, product_name):
        raise ProductNotAllowed(f"this shop may not sell {product_name!r}")
    problem = account_problem(product.account, account)
    if problem is not None:
        raise InvalidAccount(
            f"account does not fit the product's account kind {product.account.value!r}",
            details=[{"field": "account", "message": problem}],
        )
    return Intake(
        request=OrderRequest(
            order_id=order_id,
            product=product_name,
            account=account,
            quantity=quantity,
            notify_url=notify_url,
        ),
        product=product,
        wait_seconds=float(wait),
    )


def _notify_url_problem(url: str, shop: str, catalog: Catalog) -> str | None:
    if len(url) > 2048:
        return "must be at most 2048 characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return "must be an http(s) URL"
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return "must be an http(s) URL without credentials"
    if not catalog.may_notify(shop, host):
        return f"host {host!r} is not in this shop's notify_hosts"
    return None
