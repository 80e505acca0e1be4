"""The fulu protocol (protocols/fulu.md): one JSON endpoint, character-sorted MD5 signatures.

Pure: builds requests and classifies replies and callbacks; no sockets, no clock reads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Final

import orjson

from adapters.amounts import optional_cents, parse_cents
from adapters.batches import single_order
from adapters.chinatime import format_china_time
from adapters.codes import CodeTable
from adapters.excerpt import excerpt
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
    json_object,
    optional_text,
    quoted,
    reading_problem,
    unknown_balance,
    unknown_reply,
)
from adapters.settings import settings_problems
from adapters.transport import http_level_reply

PATH: Final = "/api/getway"
MOBILE_SUBMIT: Final = "fulu.order.mobile.add"
DIRECT_SUBMIT: Final = "fulu.order.direct.add"
QUERY: Final = "fulu.order.info.get"
BALANCE: Final = "fulu.user.info.get"

SUBMIT_CODES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {
        "1001": Verdict.NOT_EXECUTED,
        "1002": Verdict.NOT_EXECUTED,
        "2001": Verdict.NOT_EXECUTED,
        "3001": Verdict.NOT_EXECUTED,
        "3002": Verdict.NOT_EXECUTED,
        "3003": Verdict.NOT_EXECUTED,
        "3004": Verdict.BALANCE_INSUFFICIENT,
        "3005": Verdict.NOT_EXECUTED,
        "3006": Verdict.UNKNOWN,
        "3007": Verdict.UNKNOWN,
        "3008": Verdict.NOT_EXECUTED,
        "4001": Verdict.ACCOUNT_INVALID,
        "5000": Verdict.UNKNOWN,
    }
)
"""Submit reply codes (fulu.md); anything unlisted is unknown."""

QUERY_CODES: Final[Mapping[str, Verdict]] = MappingProxyType({"3006": Verdict.NOT_FOUND})
"""Query reply codes. A refused query (bad signature, bad parameter) says nothing about the
order, so the submit table's "not executed" codes must not leak in here: they stay unknown."""

ORDER_STATES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {
        "success": Verdict.SUCCEEDED,
        "processing": Verdict.PROCESSING,
        "untreated": Verdict.PROCESSING,
        "failed": Verdict.FAILED,
    }
)
"""`order_state` of replies and `order_status` of callbacks."""

CALLBACK_FIELDS: Final = frozenset(
    {
        "order_id",
        "charge_finish_time",
        "customer_order_no",
        "order_status",
        "recharge_description",
        "product_id",
        "price",
        "buy_num",
        "operator_serial_number",
        "sign",
    }
)
"""Every key a callback may hold (fulu.md), each a JSON string. fulu signs sorted characters, so a
key outside this list could carry characters moved out of a listed one: such a callback is malformed."""

CALLBACK_REQUIRED: Final = ("customer_order_no", "order_status", "sign")
"""The callback keys without which nothing can be verified or applied (`product_id` is direct-only,
and a supplier may leave out the other details)."""

_ENVELOPE: Final[Mapping[str, str]] = MappingProxyType(
    {"version": "2.0", "format": "json", "charset": "utf-8", "sign_type": "md5", "app_auth_token": ""}
)
_HEADERS: Final[Mapping[str, str]] = MappingProxyType({"Content-Type": "application/json; charset=utf-8"})
_ACK: Final = HttpResponse(status=200, content_type="text/plain", body=b"success")
_ASCII_RUNS: Final = re.compile(r"[\x00-\x7f]+")
# A code sent as a string. ASCII digits only, and few: str.isdigit takes "²" (which int() refuses)
# and "３００４" (which int() reads as 3004), and int() refuses more than 4300 digits.
_CODE: Final = re.compile(r"-?[0-9]{1,9}")


def compact_json(value: object) -> str:
    """The serialization fulu signs: compact, non-ASCII and `/` unescaped."""
    # orjson writes exactly that form (compact, UTF-8, "/" as is), several times faster than json.
    return orjson.dumps(value).decode()


def sign_text(text: str, secret: str) -> str:
    """MD5 of the code-point-sorted characters of `text` followed by `secret`, lower hex."""
    return _digest(sorted_characters(text), secret.encode())


def sorted_characters(text: str) -> bytes:
    """The characters of `text` sorted by code point, as UTF-8: what fulu's signatures hash."""
    if text.isascii():
        # Byte order is code-point order, and sorting small ints beats sorting 1-char strings.
        return bytes(sorted(text.encode()))
    # Every ASCII character sorts before every other, so the ASCII bytes go first, sorted as above,
    # and only the (few) others are sorted as strings.
    return bytes(sorted(text.encode("ascii", "ignore"))) + "".join(sorted(_ASCII_RUNS.sub("", text))).encode()


def _digest(ordered: bytes, secret: bytes) -> str:
    return hashlib.md5(ordered + secret, usedforsecurity=False).hexdigest()


def sign(params: Mapping[str, Any], secret: str) -> str:
    """The signature of a request or callback: `params` without its `sign` field, per fulu.md."""
    return sign_text(compact_json({key: value for key, value in params.items() if key != "sign"}), secret)


def china_time(timestamp: float) -> str:
    """Unix seconds as fulu's `YYYY-MM-DD HH:MM:SS` in China time (UTC+8, no daylight saving)."""
    return format_china_time(timestamp, "%Y-%m-%d %H:%M:%S")


class FuluAdapter:
    """fulu for one supplier: everything that does not depend on the order is computed here once.

    `charge_value` of a mobile order is the face value times the quantity, in whole yuan: fulu's
    mobile method has no quantity field. A direct order needs a numeric sku (fulu's `product_id`);
    `build_submit` raises `ValueError` for any other, since only the offer, not the supplier
    settings, shows it.
    """

    protocol: ClassVar[str] = "fulu"
    credential_keys: ClassVar[tuple[str, ...]] = ("app_key", "app_secret")
    callback_signs_result: ClassVar[bool] = True
    max_query_batch: ClassVar[int] = 1

    __slots__ = ("_query_codes", "_secret", "_submit_codes", "_templates", "_url")

    def __init__(self, settings: AdapterSettings) -> None:
        problems = settings_problems(settings, self.credential_keys)
        if problems:
            raise InvalidSettings(problems)
        self._secret = settings.credentials["app_secret"].encode()
        self._url = settings.base_url.rstrip("/") + PATH
        envelope = {"app_key": settings.credentials["app_key"], **_ENVELOPE}
        self._templates = {
            method: _Template(envelope, method) for method in (MOBILE_SUBMIT, DIRECT_SUBMIT, QUERY, BALANCE)
        }
        self._submit_codes = CodeTable(SUBMIT_CODES, settings.codes)
        self._query_codes = CodeTable(QUERY_CODES, settings.codes)

    def build_submit(self, charge: Charge) -> HttpRequest:
        if charge.account_kind is AccountKind.MOBILE_CN:
            yuan, cents = divmod(charge.face_value_cents * charge.quantity, 100)
            if cents:
                raise ValueError(f"fulu mobile top-ups take whole yuan, not {charge.face_value_cents} cents")
            biz: dict[str, object] = {
                "charge_phone": charge.account,
                "charge_value": yuan,
                "customer_order_no": charge.upstream_order_id,
            }
            return self._request(MOBILE_SUBMIT, biz, charge.timestamp)
        if not (charge.sku.isascii() and charge.sku.isdigit()):
            raise ValueError(
                f"fulu direct products need a numeric sku (fulu's product_id), not {charge.sku!r}"
            )
        biz = {
            "product_id": int(charge.sku),
            "customer_order_no": charge.upstream_order_id,
            "charge_account": charge.account,
            "buy_num": charge.quantity,
        }
        return self._request(DIRECT_SUBMIT, biz, charge.timestamp)

    def parse_submit(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        return http_level_reply(upstream_order_id, reply, "submit") or self._classify(
            upstream_order_id, reply, self._submit_codes
        )

    def build_query(self, upstream_order_ids: Sequence[str], timestamp: float) -> HttpRequest:
        upstream_order_id = single_order(upstream_order_ids, self.protocol)
        return self._request(QUERY, {"customer_order_no": upstream_order_id}, timestamp)

    def parse_query(self, upstream_order_ids: Sequence[str], reply: HttpReply) -> Mapping[str, SupplierReply]:
        upstream_order_id = single_order(upstream_order_ids, self.protocol)
        answer = http_level_reply(upstream_order_id, reply, "query") or self._classify(
            upstream_order_id, reply, self._query_codes
        )
        return {upstream_order_id: answer}

    def build_balance(self, timestamp: float) -> HttpRequest:
        return self._request(BALANCE, {}, timestamp)

    def parse_balance(self, reply: HttpReply) -> BalanceReply:
        """`result.balance` of a signed `code == 0` reply (a decimal string, or a number); else unknown."""
        unreadable = http_level_balance(reply)
        if unreadable is not None:
            return unreadable
        try:
            code, message, result, signature = _envelope(reply.body)
        except Unreadable as problem:
            return unknown_balance(reply, problem)
        if code != "0":
            return BalanceReply(balance_cents=None, code=code, message=message or f"code {code}")
        if signature is None or not _verifies(_digest(sorted_characters(result), self._secret), signature):
            return unknown_balance(reply, "reply signature does not verify", code)
        try:
            info = orjson.loads(result)
        except (ValueError, RecursionError):
            info = None
        balance = optional_cents(info.get("balance")) if isinstance(info, dict) else None
        if balance is None:
            return unknown_balance(reply, "result has no readable balance", code)
        return BalanceReply(balance_cents=balance, code=code)

    def parse_callback(self, callback: InboundCallback) -> SupplierReply:
        """Only the keys of `CALLBACK_FIELDS`, each a string, once: anything else is malformed."""
        fields = _callback_fields(callback.body)
        signed = compact_json({key: value for key, value in fields.items() if key != "sign"})
        if not _verifies(_digest(sorted_characters(signed), self._secret), fields["sign"]):
            raise BadSignature("callback signature does not verify")
        price = fields.get("price")
        try:
            cost_cents = None if price is None else parse_cents(price)
        except ValueError as error:
            raise MalformedMessage(f"callback price {price!r} is not an amount") from error
        return SupplierReply(
            upstream_order_id=fields["customer_order_no"],
            verdict=ORDER_STATES.get(fields["order_status"], Verdict.UNKNOWN),
            message=fields.get("recharge_description"),
            supplier_order_id=fields.get("order_id"),
            cost_cents=cost_cents,
        )

    def acknowledge(self) -> HttpResponse:
        return _ACK

    def _request(self, method: str, biz: Mapping[str, object], timestamp: float) -> HttpRequest:
        template = self._templates[method]
        # The two values that change, as JSON strings: biz_content is JSON inside a JSON string.
        values = orjson.dumps(china_time(timestamp)) + b',"biz_content":' + orjson.dumps(compact_json(biz))
        # The signed text is the body without `sign`; the body splices `sign` in before its `}`.
        text = template.head + values
        if template.ascii_head and values.isascii():
            # The head's bytes are sorted once per adapter: Timsort merges its run with the rest.
            ordered = bytes(sorted(template.sorted_head + values))
        else:
            ordered = sorted_characters((text + b"}").decode())
        body = b'%s,"sign":"%s"}' % (text, _digest(ordered, self._secret).encode())
        return HttpRequest(method="POST", url=self._url, headers=_HEADERS, body=body)

    def _classify(self, upstream_order_id: str, reply: HttpReply, codes: CodeTable) -> SupplierReply:
        try:
            code, message, result, signature = _envelope(reply.body)
        except Unreadable as problem:
            return unknown_reply(upstream_order_id, reading_problem(reply, problem))
        if code != "0":
            return SupplierReply(
                upstream_order_id=upstream_order_id, verdict=codes.verdict(code), code=code, message=message
            )
        if signature is None or not _verifies(_digest(sorted_characters(result), self._secret), signature):
            # The supplier may have charged: a reply we cannot trust is unknown, never "not executed".
            return unknown_reply(
                upstream_order_id, f"reply signature does not verify: {excerpt(reply.body)}", code
            )
        try:
            order = orjson.loads(result)
        except (ValueError, RecursionError):
            order = None
        if not isinstance(order, dict) or not isinstance(state := order.get("order_state"), str):
            return unknown_reply(upstream_order_id, f"result has no order_state: {excerpt(reply.body)}", code)
        echoed = order.get("customer_order_no")
        if echoed is not None and echoed != upstream_order_id:
            return unknown_reply(upstream_order_id, f"reply is about order {quoted(echoed)}", code)
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=ORDER_STATES.get(state, Verdict.UNKNOWN),
            code=code,
            message=message,
            supplier_order_id=optional_text(order.get("order_id")),
            cost_cents=optional_cents(order.get("order_price")),
        )


class _Template:
    """What every request of one method starts with, `{` to `"timestamp":`, and its bytes sorted.

    fulu signs the sorted characters of the whole compact JSON, so the part that never changes can
    be sorted once, here; a request sorts its own values into it. The closing `}` counts too.
    """

    __slots__ = ("ascii_head", "head", "sorted_head")

    def __init__(self, envelope: Mapping[str, str], method: str) -> None:
        # Serialized by the same writer as the values, so the body is what compact_json would give.
        whole = orjson.dumps({**envelope, "method": method, "timestamp": ""})
        self.head = whole[: -len(b'""}')]
        self.ascii_head = self.head.isascii()
        self.sorted_head = bytes(sorted(self.head + b"}"))


def _verifies(expected: str, signature: str) -> bool:
    # A signature is hex: nothing non-ASCII reaches case mapping. Then bytes, since compare_digest
    # refuses non-ASCII str.
    return signature.isascii() and hmac.compare_digest(expected.encode(), signature.lower().encode())


class _RepeatedKey(ValueError):
    """A JSON object names one key twice: only the copy the parser kept is covered by the signature."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise _RepeatedKey("a key is repeated")
    return fields


def _callback_fields(body: bytes) -> dict[str, str]:
    """A callback body as its fields, checked against fulu.md's list, or `MalformedMessage`."""
    try:
        # The standard parser, for its hook: orjson keeps the last of repeated keys without a word.
        parsed = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _RepeatedKey as error:
        raise MalformedMessage(f"callback repeats a key: {excerpt(body)}") from error
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise MalformedMessage(f"callback is not UTF-8 JSON: {excerpt(body)}") from error
    if not isinstance(parsed, dict):
        raise MalformedMessage(f"callback is not a JSON object: {excerpt(body)}")
    unlisted = sorted(key for key in parsed if key not in CALLBACK_FIELDS)
    if unlisted:
        shown = ", ".join(repr(key) for key in unlisted[:5])
        raise MalformedMessage(f"callback keys {shown} are not in fulu.md")
    for key, value in parsed.items():
        # A lone surrogate (`"\ud800"` in the JSON) parses but has no UTF-8 form to sign.
        if not isinstance(value, str) or not _utf8(value):
            raise MalformedMessage(f"callback {key} is not a string: {excerpt(body)}")
    missing = [key for key in CALLBACK_REQUIRED if not parsed.get(key)]
    if missing:
        raise MalformedMessage(f"callback lacks {', '.join(missing)}")
    return parsed


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _envelope(body: bytes) -> tuple[str, str | None, str, str | None]:
    """`code`, `message`, `result` and `sign` of a reply body, or `Unreadable`."""
    reply = json_object(body)
    code = reply.get("code")
    if isinstance(code, str) and _CODE.fullmatch(code):
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise Unreadable("no integer code")
    result = reply.get("result", "")
    signature = reply.get("sign")
    if not isinstance(result, str) or not (signature is None or isinstance(signature, str)):
        raise Unreadable("result or sign is not a string")
    return str(code), optional_text(reply.get("message")), result, signature
