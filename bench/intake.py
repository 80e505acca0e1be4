"""What reading a shop's order request costs: today's hand-written checks against a pydantic model.

Whether the shop API's request reader should move to pydantic, as the config did, is a question
of cost per order: this times both on the same bodies (valid and invalid), in µs per request. The
pydantic side validates the body's fields (types, ranges, pattern, unknown keys) with `validate_json`; the
checks that need the catalog (product, permission, account, carrier) are the same code for both
and are timed on their own, so "pydantic + catalog" is what a move would cost per order. Usage:

    .venv/bin/python bench/intake.py [--number 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import timeit
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.accounts import account_problem
from gateway.catalog import Catalog
from gateway.config.loader import load_config
from gateway.errors import ApiError
from gateway.intake import read_order_request
from gateway.numbering import look_up

ROOT = Path(__file__).resolve().parents[1]


class OrderBody(BaseModel):
    """The body of POST /v1/orders (CONTRACT.md §1), with today's field rules."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    product: str
    account: str
    quantity: Annotated[int, Field(ge=1, le=100)] = 1
    notify_url: Annotated[str, Field(max_length=2048)] | None = None
    wait_seconds: Annotated[int | float, Field(ge=0, le=10)] = 5.0  # strict: an int is no float
    allow_duplicate: bool = False


def per_call(call: object, number: int, repeat: int) -> float:
    times = timeit.repeat(call, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(times) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    config = load_config(ROOT / "gateway.yaml", {})
    catalog = Catalog(config)
    shop = next(iter(config.shops))
    valid = orjson.dumps(
        {"order_id": "SHOP-0001", "product": "mobile.cmcc.50", "account": "13800138000", "wait_seconds": 0}
    )
    invalid = orjson.dumps({"order_id": "bad id!", "product": 5, "quantity": 0, "colour": "red"})
    product = catalog.products["mobile.cmcc.50"]
    OrderBody.model_validate_json(valid)  # both sides must take the valid body as valid
    read_order_request(valid, shop, catalog, 5.0)

    def today(body: bytes) -> None:
        with contextlib.suppress(ApiError):
            read_order_request(body, shop, catalog, 5.0)

    def with_pydantic(body: bytes) -> None:
        try:
            parsed = OrderBody.model_validate_json(body)
        except ValidationError:
            return
        catalog.may_sell(shop, parsed.product)
        account_problem(product.account, parsed.account)
        look_up(parsed.account)

    def catalog_part() -> None:
        catalog.may_sell(shop, "mobile.cmcc.50")
        account_problem(product.account, "13800138000")
        look_up("13800138000")

    rows = [
        ("valid: today (hand-written checks)", lambda: today(valid)),
        ("valid: pydantic model + catalog checks", lambda: with_pydantic(valid)),
        ("  of which the catalog checks", catalog_part),
        ("invalid: today", lambda: today(invalid)),
        ("invalid: pydantic", lambda: with_pydantic(invalid)),
    ]
    print(f"{'µs per request':>16}  case")
    for name, call in rows:
        print(f"{per_call(call, args.number, args.repeat):16.2f}  {name}")


if __name__ == "__main__":
    main()
