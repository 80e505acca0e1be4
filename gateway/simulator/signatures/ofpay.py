"""ofpay's signatures (ofpay.md): MD5 of fixed-order concatenations ending in `keystr`, over GBK, UPPER hex.

The password itself never travels: `userpws` is its lower-hex MD5. Values outside GBK cannot be
signed and raise `UnicodeEncodeError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

SUBMIT_SIGNED: Final = ("userid", "userpws", "cardid", "cardnum", "sporder_id", "sporder_time", "game_userid")
"""The submit fields `md5_str` covers, in the order ofpay concatenates them (`keystr` follows)."""


def userpws(password: str) -> str:
    """What a request carries for the password: lower(md5(password)) over GBK bytes."""
    return hashlib.md5(password.encode("gbk"), usedforsecurity=False).hexdigest()


def submit_sign(params: Mapping[str, str], keystr: str) -> str:
    """`md5_str` of a submit: the `SUBMIT_SIGNED` fields (absent ones empty), then `keystr`."""
    return _md5_upper(*(params.get(name, "") for name in SUBMIT_SIGNED), keystr)


def callback_sign(userid: str, ret_code: str, sporder_id: str, keystr: str) -> str:
    """`sign` of a callback: upper(md5(userid + ret_code + sporder_id + keystr))."""
    return _md5_upper(userid, ret_code, sporder_id, keystr)


def balance_sign(userid: str, userpws: str, keystr: str) -> str:
    """`md5_str` of a `newqueryuserinfo.do` balance request: upper(md5(userid + userpws + keystr))."""
    return _md5_upper(userid, userpws, keystr)


def _md5_upper(*parts: str) -> str:
    return hashlib.md5("".join(parts).encode("gbk"), usedforsecurity=False).hexdigest().upper()
