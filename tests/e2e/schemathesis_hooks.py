"""Schemathesis hooks for a run by hand (README, "OpenAPI"): every request signed as a shop.

`SCHEMATHESIS_HOOKS=tests.e2e.schemathesis_hooks schemathesis run http://127.0.0.1:8080/v1/openapi.json ...`
signs as `GATEWAY_SHOP` (default `demo`) with `GATEWAY_SHOP_SECRET` (default the demo's `demo-secret`).
Importing it registers the signature for every schema of the process: the tests do not import it.
"""

from __future__ import annotations

import os

import schemathesis

from tests.e2e.shop_signature import ShopSignature

schemathesis.auth.set_from_requests(  # type: ignore[attr-defined]
    ShopSignature(
        os.environ.get("GATEWAY_SHOP", "demo"), os.environ.get("GATEWAY_SHOP_SECRET", "demo-secret")
    )
)
