"""dayuanren's signature (dayuanren.md, Signing): MD5 of key-sorted plain `k=v&…` + `&apikey=KEY`, UPPER hex.

It covers every field sent or received but `sign`, so fields added later never break verification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def signed_text(fields: Mapping[str, str], apikey: str) -> str:
    """The text signed: `k=v` of every field but `sign`, sorted by key, joined by `&`, values
    URL-decoded (as they are in `fields`), then `&apikey=` and the key."""
    pairs = [f"{key}={value}" for key, value in sorted(fields.items()) if key != "sign"]
    pairs.append(f"apikey={apikey}")
    return "&".join(pairs)


def sign(fields: Mapping[str, str], apikey: str) -> str:
    """upper(md5(`signed_text`)) over UTF-8."""
    return hashlib.md5(signed_text(fields, apikey).encode("utf-8"), usedforsecurity=False).hexdigest().upper()
