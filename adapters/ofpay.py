"""The ofpay protocol (protocols/ofpay.md): GET submits, GB2312 XML replies, GBK forms and MD5 signatures.

Pure: builds requests and classifies replies and callbacks; no sockets, no clock reads, no XML DTDs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Final
from urllib.parse import quote_plus
from xml.parsers import expat

from adapters.amounts import optional_cents
from adapters.batches import single_order
from adapters.chinatime import format_china_time
from adapters.codes import CodeTable
from adapters.excerpt import excerpt
from adapters.forms import read_fields
from adapters.interface import (
    AccountKind,
    AdapterSettings,
    BadSignature,
    BalanceReply,
    Charge,
    HttpReply,
    HttpRequest,
    HttpResponse,
    InboundCallback,
    InvalidSettings,
    MalformedMessage,
    SupplierReply,
    Verdict,
)
from adapters.replies import (
    Unreadable,
    http_level_balance,
    optional_text,
    quoted,
    reading_problem,
    unknown_balance,
    unknown_reply,
)
from adapters.settings import settings_problems
from adapters.transport import http_level_reply

SUBMIT_PATH: Final = "/onlineorder.do"
QUERY_PATH: Final = "/api/query.do"
BALANCE_PATH: Final = "/newqueryuserinfo.do"
VERSION: Final = "6.0"
ACCEPTED: Final = "1"
"""The retcode of an accepted order: its `game_state` then tells how far it got."""
MAX_FORM_FIELDS: Final = 32

SUBMIT_SIGNED: Final = ("userid", "userpws", "cardid", "cardnum", "sporder_id", "sporder_time", "game_userid")
"""The submit fields `md5_str` signs, in signing order; `keystr` follows them."""

SUBMIT_CODES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {
        "1001": Verdict.NOT_EXECUTED,
        "1002": Verdict.NOT_EXECUTED,
        "1003": Verdict.NOT_EXECUTED,
        "1005": Verdict.BALANCE_INSUFFICIENT,
        "1007": Verdict.ACCOUNT_INVALID,
        "1009": Verdict.UNKNOWN,
        "9999": Verdict.UNKNOWN,
    }
)
"""Submit `retcode`s other than 1 (ofpay.md); anything unlisted is unknown."""

QUERY_CODES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {"1": Verdict.SUCCEEDED, "9": Verdict.FAILED, "0": Verdict.PROCESSING, "-1": Verdict.NOT_FOUND}
)
"""The plain-text bodies of query replies; `-1` is assumed, so it stays overridable like the rest."""

GAME_STATES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {"0": Verdict.PROCESSING, "1": Verdict.SUCCEEDED, "9": Verdict.FAILED}
)
"""`game_state` of an accepted submit."""

CALLBACK_CODES: Final[Mapping[str, Verdict]] = MappingProxyType({"1": Verdict.SUCCEEDED, "9": Verdict.FAILED})
"""`ret_code` of callbacks."""

_ACK: Final = HttpResponse(status=200, content_type="text/plain", body=b"success")
_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
# Any DOCTYPE or entity declaration, refused in the text before Expat sees it: it would expand
# the entities a DTD declared, and fetch external ones.
_DTD: Final = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_QUERY_ANSWER: Final = re.compile(rb"-?[0-9]{1,4}")
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")


def userpws(password: str) -> str:
    """What ofpay takes in place of the password: its MD5 over GBK bytes, lower hex."""
    return hashlib.md5(password.encode("gbk"), usedforsecurity=False).hexdigest()


def sign(*parts: str) -> str:
    """ofpay's signature: MD5 of the concatenated `parts` (key last) over GBK bytes, UPPER hex."""
    return hashlib.md5("".join(parts).encode("gbk"), usedforsecurity=False).hexdigest().upper()


def callback_sign(userid: str, ret_code: str, sporder_id: str, keystr: str) -> str:
    return sign(userid, ret_code, sporder_id, keystr)


def china_time(timestamp: float) -> str:
    """Unix seconds as ofpay's `yyyyMMddHHmmss` in China time (UTC+8, no daylight saving)."""
    return format_china_time(timestamp, "%Y%m%d%H%M%S")


def encode_value(value: str) -> str:
    """A query or form value percent-encoded from its GBK bytes; `UnicodeEncodeError` outside GBK."""
    # Ids, skus and phone numbers need no escaping: skip the quoter's encode-and-scan for them.
    if _UNRESERVED.fullmatch(value):
        return value
    return quote_plus(value, safe="", encoding="gbk", errors="strict")


def read_form(data: bytes | str) -> dict[str, str]:
    """A query string or form whose values are percent-encoded GBK bytes; `ValueError` if it is not one.

    Raw non-ASCII, bytes that are not GB18030 (a superset of GBK), fields without `=`, repeated
    fields and more than `MAX_FORM_FIELDS` fields are all refused.
    """
    text = (data.decode("ascii") if isinstance(data, bytes) else data).strip()
    return read_fields(text, max_fields=MAX_FORM_FIELDS, encoding="gb18030")


class OfpayAdapter:
    """ofpay for one supplier: everything that does not depend on the order is computed here once.

    `cardnum` of a mobile order is the face value times the quantity, in whole yuan; of any other
    order, the quantity. `build_submit` raises `ValueError` for an empty sku, a mobile face value
    in fen, or a field GBK cannot encode, since only the order, not the settings, shows them.
    `codes:` overrides apply to submit retcodes other than 1 and to the query's plain-text answers.
    """

    protocol: ClassVar[str] = "ofpay"
    credential_keys: ClassVar[tuple[str, ...]] = ("userid", "password", "keystr")
    callback_signs_result: ClassVar[bool] = True
    max_query_batch: ClassVar[int] = 1

    __slots__ = (
        "_balance_url",
        "_keystr",
        "_query_codes",
        "_query_url",
        "_ret_url",
        "_sign_prefix",
        "_submit_codes",
        "_submit_url",
        "_userid",
    )

    def __init__(self, settings: AdapterSettings) -> None:
        problems = settings_problems(settings, self.credential_keys, _gbk_problem)
        if problems:
            raise InvalidSettings(problems)
        userid = settings.credentials["userid"]
        password_md5 = userpws(settings.credentials["password"])
        base = settings.base_url.rstrip("/")
        self._userid = userid.encode("gbk")
        self._keystr = settings.credentials["keystr"].encode("gbk")
        self._sign_prefix = self._userid + password_md5.encode("ascii")
        # Everything in the URL before the first per-order value.
        self._submit_url = f"{base}{SUBMIT_PATH}?userid={encode_value(userid)}&userpws={password_md5}&cardid="
        self._query_url = f"{base}{QUERY_PATH}?userid={encode_value(userid)}&spbillid="
        # The balance call depends on the credentials alone: its whole URL is fixed (ofpay.md, Balance).
        balance_sign = sign(userid, password_md5, settings.credentials["keystr"])
        self._balance_url = (
            f"{base}{BALANCE_PATH}?userid={encode_value(userid)}&userpws={password_md5}"
            f"&version={VERSION}&md5_str={balance_sign}"
        )
        self._submit_codes = CodeTable(SUBMIT_CODES, settings.codes)
        self._query_codes = CodeTable(QUERY_CODES, settings.codes)
        # The last callback URL and its encoding: the gateway passes one URL per supplier, and
        # quoting it is the dearest step of a submit.
        self._ret_url = ("", "")

    def build_submit(self, charge: Charge) -> HttpRequest:
        if not charge.sku:
            raise ValueError("ofpay needs a product code (cardid) as the offer's sku")
        if charge.account_kind is AccountKind.MOBILE_CN:
            yuan, fen = divmod(charge.face_value_cents * charge.quantity, 100)
            if fen:
                raise ValueError(f"ofpay phone top-ups take whole yuan, not {charge.face_value_cents} cents")
            cardnum = str(yuan)
        else:
            cardnum = str(charge.quantity)
        sporder_time = china_time(charge.timestamp)
        callback_url, ret_url = self._ret_url
        order_fields = f"{charge.sku}{cardnum}{charge.upstream_order_id}{sporder_time}{charge.account}"
        try:
            md5_str = (
                hashlib.md5(
                    self._sign_prefix + order_fields.encode("gbk") + self._keystr, usedforsecurity=False
                )
                .hexdigest()
                .upper()
            )
            if callback_url != charge.callback_url:
                ret_url = encode_value(charge.callback_url)
                self._ret_url = (charge.callback_url, ret_url)
            url = (
                f"{self._submit_url}{encode_value(charge.sku)}&cardnum={cardnum}"
                f"&sporder_id={encode_value(charge.upstream_order_id)}&sporder_time={sporder_time}"
                f"&game_userid={encode_value(charge.account)}&md5_str={md5_str}"
                f"&ret_url={ret_url}&version={VERSION}"
            )
        except UnicodeEncodeError as error:
            bad = error.object[error.start : error.end]
            raise ValueError(f"ofpay speaks GBK, which cannot encode {bad!r}") from error
        return HttpRequest(method="GET", url=url, headers=_NO_HEADERS)

    def parse_submit(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        return http_level_reply(upstream_order_id, reply, "submit") or self._classify(
            upstream_order_id, reply
        )

    def build_query(self, upstream_order_ids: Sequence[str], timestamp: float) -> HttpRequest:
        upstream_order_id = single_order(upstream_order_ids, self.protocol)
        return HttpRequest(
            method="GET", url=self._query_url + encode_value(upstream_order_id), headers=_NO_HEADERS
        )

    def parse_query(self, upstream_order_ids: Sequence[str], reply: HttpReply) -> Mapping[str, SupplierReply]:
        upstream_order_id = single_order(upstream_order_ids, self.protocol)
        answer = http_level_reply(upstream_order_id, reply, "query") or self._query_answer(
            upstream_order_id, reply
        )
        return {upstream_order_id: answer}

    def build_balance(self, timestamp: float) -> HttpRequest:
        # ofpay's balance call carries no timestamp; the argument is part of the adapter contract.
        return HttpRequest(method="GET", url=self._balance_url, headers=_NO_HEADERS)

    def parse_balance(self, reply: HttpReply) -> BalanceReply:
        """`ret_leftcredit` of a `userinfo` document whose `retcode` is 1; anything else is unknown."""
        unreadable = http_level_balance(reply)
        if unreadable is not None:
            return unreadable
        try:
            info = _element(reply.body, "userinfo")
        except Unreadable as problem:
            return unknown_balance(reply, problem)
        retcode = optional_text(info.get("retcode"))
        if retcode != ACCEPTED:
            message = optional_text(info.get("err_msg"))
            return BalanceReply(balance_cents=None, code=retcode, message=message or f"retcode {retcode!r}")
        balance = optional_cents(info.get("ret_leftcredit"))
        if balance is None:
            return unknown_balance(reply, "no readable ret_leftcredit", retcode)
        return BalanceReply(balance_cents=balance, code=retcode)

    def parse_callback(self, callback: InboundCallback) -> SupplierReply:
        try:
            fields = read_form(callback.body)
        except ValueError as error:
            raise MalformedMessage(f"callback is not a GBK form: {excerpt(callback.body)}") from error
        ret_code = fields.get("ret_code")
        upstream_order_id = fields.get("sporder_id")
        signature = fields.get("sign")
        if not ret_code or not upstream_order_id or not signature:
            raise MalformedMessage("callback lacks ret_code, sporder_id or sign")
        try:
            signed = (ret_code + upstream_order_id).encode("gbk")
        except UnicodeEncodeError as error:
            raise MalformedMessage("callback ret_code or sporder_id is outside GBK") from error
        expected = hashlib.md5(self._userid + signed + self._keystr, usedforsecurity=False)
        if not signature.isascii() or not hmac.compare_digest(
            expected.hexdigest().upper(), signature.upper()
        ):
            raise BadSignature("callback signature does not verify")
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=CALLBACK_CODES.get(ret_code, Verdict.UNKNOWN),
            code=ret_code,
            message=fields.get("err_msg") or None,
        )

    def acknowledge(self) -> HttpResponse:
        return _ACK

    def _classify(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        try:
            order = _orderinfo(reply.body)
        except Unreadable as problem:
            return unknown_reply(upstream_order_id, reading_problem(reply, problem))
        retcode = optional_text(order.get("retcode"))
        if not retcode:
            return unknown_reply(upstream_order_id, reading_problem(reply, "no retcode"))
        message = optional_text(order.get("err_msg"))
        echoed = order.get("sporder_id")
        if echoed is not None and echoed != upstream_order_id:
            return unknown_reply(upstream_order_id, f"reply is about order {quoted(echoed)}", retcode)
        if retcode != ACCEPTED:
            return SupplierReply(
                upstream_order_id=upstream_order_id,
                verdict=self._submit_codes.verdict(retcode),
                code=retcode,
                message=message,
            )
        if echoed is None:
            # Only the echo ties an acceptance to this order rather than to some other request.
            return unknown_reply(
                upstream_order_id, f"accepted reply names no sporder_id: {excerpt(reply.body)}", retcode
            )
        state = optional_text(order.get("game_state"))
        verdict = GAME_STATES.get(state or "", Verdict.UNKNOWN)
        if verdict is Verdict.UNKNOWN:
            message = f"game_state {state!r} is not 0, 1 or 9"
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=verdict,
            code=retcode,
            message=message,
            supplier_order_id=optional_text(order.get("orderid")),
            cost_cents=optional_cents(order.get("ordercash")),
        )

    def _query_answer(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        answer = reply.body.strip()
        if reply.status != 200 or not _QUERY_ANSWER.fullmatch(answer):
            return unknown_reply(upstream_order_id, reading_problem(reply, "not a query answer"))
        code = answer.decode("ascii")
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=self._query_codes.verdict(code),
            code=code,
            message=None if code in self._query_codes else f"unlisted query answer {code!r}",
        )


def _orderinfo(body: bytes) -> Mapping[str, object]:
    """The children of a reply's `orderinfo` element, or `Unreadable`."""
    return _element(body, "orderinfo")


def _element(body: bytes, root: str) -> Mapping[str, object]:
    """The children of a reply's `root` element, or `Unreadable`."""
    if not body.strip():
        raise Unreadable("empty body")
    try:
        # GB18030 extends GB2312 and GBK byte for byte; Expat reads none of them, so decode here.
        text = body.decode("gb18030").lstrip()
    except UnicodeDecodeError as error:
        raise Unreadable("not GB2312") from error
    if _DTD.search(text):
        raise Unreadable("DTD refused")
    if text.startswith("<?xml"):
        # The declaration names an encoding the text no longer has.
        text = text[text.find("?>") + 2 :]
    try:
        element = _document(text).get(root)
    except (expat.ExpatError, ValueError) as error:
        raise Unreadable("not well-formed XML") from error
    if not isinstance(element, dict):
        raise Unreadable(f"no {root}")
    return element


_Open = tuple[dict[str, object], list[str]]
"""An element being read: its children so far, and its own text in pieces."""


def _document(text: str) -> dict[str, object]:
    """`text` as `{root name: value}`, read the way xmltodict read it (`xml_attribs=False`).

    A leaf is its stripped text or None; an element with children a dict of them, its own text
    (if any) under `#text`; a repeated element a list. Plain Expat without namespaces, as xmltodict
    used it, so `xmlns` and prefixes read as they always did. Python handlers, but only three small
    ones: this costs about what ElementTree's C tree builder plus turning its tree into this does.
    """
    parser = expat.ParserCreate("utf-8")
    parser.buffer_text = True
    stack: list[_Open] = []
    top: _Open = ({}, [])  # the document, whose one child is the root

    def start(name: str, attributes: object) -> None:
        nonlocal top
        stack.append(top)
        top = ({}, [])

    def end(name: str) -> None:
        nonlocal top
        children, texts = top
        top = stack.pop()
        value: object = "".join(texts).strip() or None
        if children:
            if value:
                children["#text"] = value
            value = children
        siblings = top[0]
        if name not in siblings:
            siblings[name] = value
        elif isinstance(earlier := siblings[name], list):
            earlier.append(value)
        else:
            siblings[name] = [earlier, value]

    def characters(data: str) -> None:
        top[1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    # `_element` refused every DTD already; should one get past it, none of it is read.
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.Parse(text.encode("utf-8"), True)
    return top[0]


def _refuse_dtd(*declaration: object) -> None:
    raise Unreadable("DTD refused")


def _gbk_problem(value: str) -> str | None:
    try:
        value.encode("gbk")
    except UnicodeEncodeError:
        return "has characters GBK cannot encode"
    return None
