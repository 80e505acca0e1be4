"""juhe's signatures (juhe.md): lower-hex MD5 of fixed-order concatenations over UTF-8.

The callback's covers the two order ids only, not the result: see `JuheFront.forged_callbacks`.
"""

from __future__ import annotations

import hashlib


def submit_sign(openid: str, key: str, phoneno: str, cardnum: str, orderid: str) -> str:
    """`sign` of a submit: lower(md5(openid + key + phoneno + cardnum + orderid))."""
    return _md5(openid, key, phoneno, cardnum, orderid)


def callback_sign(key: str, sporder_id: str, orderid: str) -> str:
    """`sign` of a callback: lower(md5(key + sporder_id + orderid))."""
    return _md5(key, sporder_id, orderid)


def balance_sign(openid: str, key: str, timestamp: str) -> str:
    """`sign` of a `yue` balance request: lower(md5(openid + key + timestamp))."""
    return _md5(openid, key, timestamp)


def _md5(*parts: str) -> str:
    return hashlib.md5("".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()
