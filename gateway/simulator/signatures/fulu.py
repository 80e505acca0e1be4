"""fulu's signature (fulu.md, Signing): MD5 of the code-point-sorted characters of compact JSON + secret.

Also owns that compact JSON, since it is both what fulu signs and how fulu writes its bodies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def compact_json(value: object) -> str:
    """JSON with separators `,` and `:`, non-ASCII and `/` unescaped, keys in the given order.

    The standard library's encoder never escapes `/`; NaN and infinities are no JSON and refused
    (`ValueError`), as a supplier's parser would refuse them.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def sign_text(text: str, secret: str) -> str:
    """MD5 of `text`'s characters sorted by code point, then `secret`, over UTF-8; lower hex.

    `UnicodeEncodeError` for text UTF-8 cannot carry (a lone surrogate from a `\\ud800` escape).
    """
    ordered = "".join(sorted(text)) + secret
    return hashlib.md5(ordered.encode("utf-8"), usedforsecurity=False).hexdigest()


def sign_params(params: Mapping[str, object], secret: str) -> str:
    """The `sign` of a request or callback: every field but `sign`, re-serialized compactly.

    Key order does not matter (the characters are sorted); escaping and number formatting do,
    which is why the receiver re-serializes what it parsed rather than reusing the sender's bytes.
    """
    return sign_text(compact_json({key: value for key, value in params.items() if key != "sign"}), secret)
