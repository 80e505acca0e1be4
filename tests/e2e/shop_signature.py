"""A shop's request signature as a `requests` auth: how schemathesis (tests and by hand) signs shop requests.

Test support only: it signs as CONTRACT.md §1 says, with `gateway.auth.request_signature`.
"""

from __future__ import annotations

import secrets
import time

import requests
from requests.auth import AuthBase

from gateway.auth import request_signature


class ShopSignature(AuthBase):
    """Signs each request as it leaves: a fresh timestamp and nonce, and the HMAC over the method, the path
    with its query string and the body bytes exactly as requests sends them (the prepared request)."""

    def __init__(self, shop: str, secret: str) -> None:
        self.shop = shop
        self.secret = secret.encode()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes):
            raise TypeError("a streamed body cannot be signed: its bytes are not known before it is sent")
        timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
        assert request.method is not None
        request.headers.update(
            {
                "X-Shop-Id": self.shop,
                "X-Timestamp": timestamp,
                "X-Nonce": nonce,
                "X-Signature": request_signature(
                    self.secret, request.method, request.path_url, timestamp, nonce, body
                ),
            }
        )
        return request
