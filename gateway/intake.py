"""Reading a shop's order request: JSON, field rules, product, permission, account; every problem at once.

Pure: takes bytes and the catalog, returns a validated request or raises an `ApiError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from adapters.interface import AccountKind
from gateway.accounts import account_problem
from gateway.catalog import Catalog
from gateway.config.model import CarrierCheck, ProductConfig
from gateway.errors import CarrierMismatch, InvalidAccount, InvalidRequest, ProductNotAllowed, UnknownProduct
from gateway.jsonbody import json_object, unknown_fields
from gateway.mobile import AccountInfo, Province
from gateway.numbering import look_up
from gateway.order import OrderRequest

ORDER_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# GET /v1/orders/events is the live stream, so an order with that id could never be read back.
RESERVED_ORDER_IDS: Final = frozenset({"events", "ws"})  # /v1/orders/events and /v1/orders/ws
FIELDS: Final = frozenset(
    {"order_id", "product", "account", "quantity", "notify_url", "wait_seconds", "allow_duplicate"}
)
MAX_WAIT_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Intake:
    request: OrderRequest
    product: ProductConfig
    wait_seconds: float
    # "A second purchase": skips the duplicate guard (CONTRACT.md §7). Like wait_seconds, it says how to
    # take this request, not what the order is, so idempotency does not compare it (not in OrderRequest).
    allow_duplicate: bool = False
    # The one lookup of a mobile_cn number: the order keeps it, routing reads its province.
    account_info: AccountInfo | None = None

    @property
    def province(self) -> Province | None:
        return self.account_info.province if self.account_info is not None else None


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
    doc = json_object(body)
    problems = unknown_fields(doc, FIELDS)
    order_id = _string(doc, "order_id", problems, required=True)
    if order_id is not None and ORDER_ID.fullmatch(order_id) is None:
        problems.append({"field": "order_id", "message": "must be 1 to 64 of letters, digits, _ . and -"})
    elif order_id in RESERVED_ORDER_IDS:
        problems.append(
            {"field": "order_id", "message": f"{order_id!r} is reserved: it names an event stream"}
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

    allow_duplicate = doc.get("allow_duplicate", False)
    if not isinstance(allow_duplicate, bool):
        problems.append({"field": "allow_duplicate", "message": "must be true or false"})

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
    account_info = look_up(account) if product.account is AccountKind.MOBILE_CN else None
    if account_info is not None:
        _check_carrier(product, account_info)
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
        allow_duplicate=allow_duplicate is True,
        account_info=account_info,
    )


def _check_carrier(product: ProductConfig, info: AccountInfo) -> None:
    """Refuse a number whose prefix belongs to another carrier; an unknown carrier is let through."""
    wanted, found = product.carrier, info.carrier
    if wanted is None or found is None or found is wanted or product.carrier_check is CarrierCheck.OFF:
        return
    message = (
        f"the number is a {found.chinese_name} ({found.value}) number; "
        f"this product recharges {wanted.chinese_name} ({wanted.value}) numbers"
    )
    raise CarrierMismatch(message, details=[{"field": "account", "message": message}])


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
