"""The ofpay protocol from the supplier's side: reads its GET requests, writes GB2312 replies, GBK callbacks.

Decides nothing (the engine does). Verifies and signs with its own code (`signatures.ofpay`) and
encodes with the standard library's GB2312 and GBK codecs, written from ofpay.md as a supplier
would: nothing here comes from `adapters`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from gateway.simulator.chinatime import china_time
from gateway.simulator.forms import read_form
from gateway.simulator.front import (
    TOO_MANY_REQUESTS,
    BalanceRequest,
    HttpReply,
    HttpRequest,
    Incoming,
    QueryRequest,
    Reading,
    Refusal,
    Rejection,
    SubmitRequest,
    guessed,
    reply,
    require_credentials,
)
from gateway.simulator.ledger import ChargeState, LedgerEntry
from gateway.simulator.money import yuan_text
from gateway.simulator.signatures.ofpay import balance_sign, callback_sign, submit_sign, userpws
from gateway.simulator.traffic import Operation

SUBMIT_PATH: Final = "/onlineorder.do"
QUERY_PATH: Final = "/api/query.do"
BALANCE_PATH: Final = "/newqueryuserinfo.do"
VERSION: Final = "6.0"
ACCEPTED: Final = "1"
"""`retcode` of an accepted submit."""
TIME_PATTERN: Final = "%Y%m%d%H%M%S"
"""`yyyyMMddHHmmss` in China time, as ofpay writes timestamps."""
MAX_FORM_FIELDS: Final = 32
"""A submit has ten fields; the bound caps the work an oversized query string can cause."""

PHONE_TOP_UP_PREFIX: Final = "1401"
"""cardids of phone top-ups (140101 in ofpay.md), whose `cardnum` is yuan; any other's is a quantity."""

_XML: Final = "text/xml; charset=GB2312"
_TEXT: Final = "text/plain; charset=GB2312"
_FORM: Final = "application/x-www-form-urlencoded; charset=GBK"
_DECLARATION: Final = '<?xml version="1.0" encoding="GB2312"?>\n'
_OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(
    {SUBMIT_PATH: Operation.SUBMIT, QUERY_PATH: Operation.QUERY, BALANCE_PATH: Operation.BALANCE}
)
_REFUSALS: Final[Mapping[Refusal, tuple[int, str]]] = MappingProxyType(
    {
        Refusal.UNKNOWN_CREDENTIAL: (1001, "用户名或密码错误"),
        Refusal.BAD_SIGNATURE: (1002, "MD5验证错误"),
        Refusal.BAD_REQUEST: (1003, "参数错误"),
        Refusal.UNKNOWN_PRODUCT: (1003, "商品不存在或已下架"),
        Refusal.REFUSED: (1003, "商品暂时缺货"),
        Refusal.BALANCE_INSUFFICIENT: (1005, "账户金额不足"),
        Refusal.DUPLICATE: (1009, "订单号已存在"),
    }
)
_GAME_STATES: Final[Mapping[ChargeState, str]] = MappingProxyType(
    {
        ChargeState.CHARGING: "0",
        ChargeState.SUCCEEDED: "1",
        ChargeState.PARTIAL: "1",  # ofpay cannot say "partly": never drawn, as supports_partial is False
        ChargeState.FAILED: "9",
        ChargeState.NOT_CHARGED: "9",
    }
)
_NOT_FOUND: Final = b"-1"
_PRINTABLE_ASCII: Final = "".join(map(chr, range(0x21, 0x7F)))


class _Invalid(Exception):
    """A request field is missing or malformed (answered as ofpay's 1003)."""


class OfpayFront:
    """ofpay as one supplier with these credentials serves it."""

    protocol: ClassVar[str] = "ofpay"
    routes: ClassVar[tuple[tuple[str, str], ...]] = (
        ("GET", SUBMIT_PATH),
        ("GET", QUERY_PATH),
        ("GET", BALANCE_PATH),
    )
    credential_keys: ClassVar[tuple[str, ...]] = ("userid", "password", "keystr")
    supports_partial: ClassVar[bool] = False
    carries_notify_url: ClassVar[bool] = True

    __slots__ = ("_keystr", "_userid", "_userpws")

    def __init__(self, credentials: Mapping[str, str]) -> None:
        require_credentials(self.protocol, self.credential_keys, credentials)
        self._userid = credentials["userid"]
        self._userpws = userpws(credentials["password"])
        self._keystr = credentials["keystr"]

    def read(self, request: Incoming) -> Reading:
        operation = _OPERATIONS.get(request.path, Operation.OTHER)
        try:
            # GB18030 decodes every GBK byte sequence (it is a superset) and refuses what is neither.
            params = read_form(
                _percent_form(request.query_string), encoding="gb18030", max_fields=MAX_FORM_FIELDS
            )
        except ValueError:
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)
        if operation is Operation.SUBMIT:
            return self._read_submit(params)
        if operation is Operation.QUERY:
            return self._read_query(params)
        if operation is Operation.BALANCE:
            return self._read_balance(params)
        return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)

    def supplier_order_id(self, sequence: int) -> str:
        return f"S{sequence:016d}"

    def submit_reply(self, entry: LedgerEntry) -> HttpReply:
        fields = {
            "err_msg": "",
            "retcode": ACCEPTED,
            "orderid": entry.supplier_order_id,
            "cardid": entry.sku or "",
            "cardnum": _cardnum(entry),
        }
        if entry.cost_cents is not None:
            fields["ordercash"] = yuan_text(entry.cost_cents)
        fields |= {
            "cardname": _cardname(entry),
            "sporder_id": entry.upstream_order_id,
            "game_userid": entry.account,
            "game_state": _GAME_STATES[entry.state],
        }
        return _orderinfo(fields)

    def query_reply(self, query: QueryRequest, found: Mapping[str, LedgerEntry]) -> HttpReply:
        entry = found.get(query.upstream_order_ids[0])
        body = _NOT_FOUND if entry is None else _GAME_STATES[entry.state].encode("ascii")
        return reply(200, _TEXT, body)

    def balance_reply(self, balance_cents: int) -> HttpReply:
        fields = {
            "err_msg": "",
            "retcode": ACCEPTED,
            "userid": self._userid,
            "ret_leftcredit": yuan_text(balance_cents),
        }
        return _document("userinfo", fields)

    def rejection_reply(self, rejection: Rejection) -> HttpReply:
        if rejection.refusal is Refusal.THROTTLED:
            return TOO_MANY_REQUESTS  # ofpay has no throttling code
        # Queries have no error vocabulary of their own: their refusals come as submit errors do.
        code, message = _REFUSALS[rejection.refusal]
        fields = {"err_msg": message, "retcode": str(code)}
        if rejection.operation is Operation.SUBMIT and rejection.upstream_order_ids:
            fields["sporder_id"] = rejection.upstream_order_ids[0]
        if rejection.operation is Operation.BALANCE:
            return _document("userinfo", fields)
        return _orderinfo(fields)

    def callback(self, entry: LedgerEntry, url: str) -> HttpRequest:
        delivered = entry.state in {ChargeState.SUCCEEDED, ChargeState.PARTIAL}
        ret_code = "1" if delivered else "9"
        fields = {
            "ret_code": ret_code,
            "sporder_id": entry.upstream_order_id,
            "ordersuccesstime": china_time(entry.finished_at or 0.0, TIME_PATTERN),
            "err_msg": "充值成功" if delivered else "充值失败",
            "sign": callback_sign(self._userid, ret_code, entry.upstream_order_id, self._keystr),
        }
        body = urlencode(fields, encoding="gbk").encode("ascii")
        return HttpRequest(method="POST", url=url, headers={"Content-Type": _FORM}, body=body)

    def forged_callbacks(self, entry: LedgerEntry, url: str) -> tuple[HttpRequest, ...]:
        # Callbacks are signed without the password: only the key is guessed.
        impostor = OfpayFront({"userid": self._userid, "password": "-", "keystr": guessed(self._keystr)})
        return (impostor.callback(entry.opposite(), url),)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"success"

    def _read_submit(self, params: Mapping[str, str]) -> Reading:
        upstream_order_id = params.get("sporder_id", "")
        ids = (upstream_order_id,) if upstream_order_id else ()
        if not (
            _same(params.get("userid", ""), self._userid)
            and _same(params.get("userpws", "").lower(), self._userpws)
        ):
            return Rejection(
                refusal=Refusal.UNKNOWN_CREDENTIAL, operation=Operation.SUBMIT, upstream_order_ids=ids
            )
        try:
            expected = submit_sign(params, self._keystr)
        except UnicodeEncodeError:
            expected = ""  # a value outside GBK cannot carry a GBK signature
        if not expected or not _same(params.get("md5_str", "").upper(), expected):
            return Rejection(
                refusal=Refusal.BAD_SIGNATURE, operation=Operation.SUBMIT, upstream_order_ids=ids
            )
        try:
            cardid = _required(params, "cardid")
            cardnum = _positive(params, "cardnum")
            _required(params, "sporder_time")
            if params.get("version") != VERSION:
                raise _Invalid("version")
            phone = cardid.startswith(PHONE_TOP_UP_PREFIX)
            return SubmitRequest(
                upstream_order_id=_required(params, "sporder_id"),
                account=_required(params, "game_userid"),
                sku=cardid,
                face_value_cents=cardnum * 100 if phone else None,
                quantity=1 if phone else cardnum,
                notify_url=params.get("ret_url") or None,
            )
        except _Invalid:
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.SUBMIT, upstream_order_ids=ids)

    def _read_balance(self, params: Mapping[str, str]) -> Reading:
        if not (
            _same(params.get("userid", ""), self._userid)
            and _same(params.get("userpws", "").lower(), self._userpws)
        ):
            return Rejection(refusal=Refusal.UNKNOWN_CREDENTIAL, operation=Operation.BALANCE)
        expected = balance_sign(self._userid, self._userpws, self._keystr)
        if not _same(params.get("md5_str", "").upper(), expected):
            return Rejection(refusal=Refusal.BAD_SIGNATURE, operation=Operation.BALANCE)
        if params.get("version") != VERSION:
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.BALANCE)
        return BalanceRequest()

    def _read_query(self, params: Mapping[str, str]) -> Reading:
        upstream_order_id = params.get("spbillid", "")
        ids = (upstream_order_id,) if upstream_order_id else ()
        if not _same(params.get("userid", ""), self._userid):
            return Rejection(
                refusal=Refusal.UNKNOWN_CREDENTIAL, operation=Operation.QUERY, upstream_order_ids=ids
            )
        if not upstream_order_id:
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.QUERY)
        return QueryRequest(upstream_order_ids=ids)


def _percent_form(query_string: str) -> str:
    """The query string with every byte outside printable ASCII percent-encoded again.

    aiohttp decodes the %XX runs that happen to be UTF-8 (and `+` to a space) but leaves GBK runs
    encoded; turning the decoded characters back into their UTF-8 bytes restores what was sent.
    Only a sent `%25` cannot be told from a bare `%` any more: that needs the raw query string.
    """
    return quote(query_string, safe=_PRINTABLE_ASCII)


def _orderinfo(fields: Mapping[str, str]) -> HttpReply:
    """An `orderinfo` document, really GB2312: whatever GB2312 lacks becomes a character reference."""
    return _document("orderinfo", fields)


def _document(root: str, fields: Mapping[str, str]) -> HttpReply:
    """A `root` element of `fields` in GB2312, as every ofpay reply document is written."""
    children = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    text = f"{_DECLARATION}<{root}>{children}</{root}>"
    return reply(200, _XML, text.encode("gb2312", errors="xmlcharrefreplace"))


def _cardnum(entry: LedgerEntry) -> str:
    phone = (entry.sku or "").startswith(PHONE_TOP_UP_PREFIX)
    if phone and entry.face_value_cents is not None:
        return str(entry.face_value_cents * entry.quantity // 100)
    return str(entry.quantity)


def _cardname(entry: LedgerEntry) -> str:
    if (entry.sku or "").startswith(PHONE_TOP_UP_PREFIX):
        return f"话费{_cardnum(entry)}元直充"
    return "游戏点卡直充"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _required(params: Mapping[str, str], key: str) -> str:
    value = params.get(key)
    if not value:
        raise _Invalid(key)
    return value


def _positive(params: Mapping[str, str], key: str) -> int:
    value = _required(params, key)
    if not (value.isascii() and value.isdigit()) or value.startswith("0"):
        raise _Invalid(key)
    return int(value)
