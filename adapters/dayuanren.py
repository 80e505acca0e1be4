"""The dayuanren protocol (protocols/dayuanren.md): form POSTs, key-sorted MD5 signatures, partial results.

Pure: builds requests and classifies replies and callbacks; no sockets, no clock reads.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Final
from urllib.parse import quote_plus

from adapters.amounts import optional_cents, parse_cents, yuan_text
from adapters.codes import CodeTable
from adapters.excerpt import excerpt
from adapters.forms import read_fields
from adapters.interface import (
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

SUBMIT_PATH: Final = "/yrapi.php/index/recharge"
QUERY_PATH: Final = "/yrapi.php/index/check"
BALANCE_PATH: Final = "/yrapi.php/index/user"
MAX_QUERY_BATCH: Final = 50
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS: Final = 100  # a callback has eleven; bounds the work an oversized body can cause

SUBMIT_CODES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {
        "1": Verdict.NOT_EXECUTED,
        "1001": Verdict.NOT_EXECUTED,
        "1002": Verdict.BALANCE_INSUFFICIENT,
        "1003": Verdict.NOT_EXECUTED,
        "1004": Verdict.NOT_EXECUTED,
        "1005": Verdict.UNKNOWN,
        "1006": Verdict.ACCOUNT_INVALID,
        "500": Verdict.UNKNOWN,
    }
)
"""Submit `errno`s (dayuanren.md); anything unlisted is unknown. A refused query never uses this
table: it says nothing about the orders it names, so every one of them stays unknown."""

ORDER_STATES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {
        "0": Verdict.PROCESSING,
        "1": Verdict.SUCCEEDED,
        "2": Verdict.FAILED,
        "-1": Verdict.FAILED,  # cancelled before charging: as safe to route elsewhere as a failure
        "3": Verdict.PARTIAL,
    }
)
"""`state` of query entries and callbacks; any other state is unknown."""

CALLBACK_REQUIRED: Final = ("userid", "out_trade_num", "state")
"""What a callback cannot do without; the other documented fields only add detail."""

_ERRNO: Final = re.compile(r"-?(0|[1-9][0-9]*)")
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote_plus never escapes
_HEADERS: Final[Mapping[str, str]] = MappingProxyType({"Content-Type": FORM_CONTENT_TYPE})
_ACK: Final = HttpResponse(status=200, content_type="text/plain", body=b"success")


def signed_text(fields: Mapping[str, str], apikey: str) -> str:
    """What dayuanren signs: `k=v` of every field but `sign`, sorted by key, `&`-joined, plain values."""
    pairs = "&".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "sign")
    return f"{pairs}&apikey={apikey}"


def sign(fields: Mapping[str, str], apikey: str) -> str:
    """The signature of a request or callback: MD5 of `signed_text` as UTF-8, UPPER hex."""
    return _md5(signed_text(fields, apikey))


def encode_form(fields: Mapping[str, str]) -> bytes:
    """An `application/x-www-form-urlencoded` body, UTF-8, in the mapping's order."""
    return "&".join(f"{quote_plus(key)}={quote_plus(value)}" for key, value in fields.items()).encode()


def decode_form(body: bytes) -> dict[str, str]:
    """A form body as plain (percent-decoded) UTF-8 fields; `ValueError` when it is not one.

    A repeated field is refused: which copy the supplier signed cannot be known.
    """
    try:
        return read_fields(body.decode("utf-8"), max_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as error:  # in the body or in a percent-encoded value
        raise ValueError("not UTF-8") from error


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()


def _verifies(expected: str, signature: str) -> bool:
    # ASCII first: case mapping would turn "ﬀ" into "FF". Then bytes, since compare_digest refuses
    # non-ASCII str; suppliers differ in hex case.
    return signature.isascii() and hmac.compare_digest(expected.encode(), signature.upper().encode())


class DayuanrenAdapter:
    """dayuanren for one supplier: everything that does not depend on the order is computed here once.

    `amount` is the face value in whole yuan, and dayuanren has no quantity field: `build_submit`
    raises `ValueError` for fractions of a yuan or a quantity other than 1, since only the offer,
    not the supplier settings, shows either. The `codes:` overrides apply to submits only.
    """

    protocol: ClassVar[str] = "dayuanren"
    credential_keys: ClassVar[tuple[str, ...]] = ("userid", "apikey")
    callback_signs_result: ClassVar[bool] = True
    max_query_batch: ClassVar[int] = MAX_QUERY_BATCH

    __slots__ = (
        "_apikey",
        "_balance",
        "_codes",
        "_query_url",
        "_quoted",
        "_sign_suffix",
        "_submit_url",
        "_userid",
        "_userid_form",
    )

    def __init__(self, settings: AdapterSettings) -> None:
        problems = settings_problems(settings, self.credential_keys)
        for code in settings.codes:
            if _ERRNO.fullmatch(code) is None:
                problems.append((f"codes.{code}", "dayuanren errno codes are integers like 1002"))
        if problems:
            raise InvalidSettings(problems)
        self._userid = settings.credentials["userid"]
        self._apikey = settings.credentials["apikey"]
        base = settings.base_url.rstrip("/")
        self._submit_url = base + SUBMIT_PATH
        self._query_url = base + QUERY_PATH
        # `userid` sorts last among the fields of both requests, so its pair and the key close every
        # signed text, and its encoded pair closes every body before `sign`.
        self._sign_suffix = f"&userid={self._userid}&apikey={self._apikey}"
        self._userid_form = f"&userid={quote_plus(self._userid)}&sign="
        self._codes = CodeTable(SUBMIT_CODES, settings.codes)
        # The last value that needed quoting, and its quoted form: in practice the notify URL, one
        # per supplier, and quoting it is the dearest step of a submit (as ofpay's ret_url).
        self._quoted = ("", "")
        # The balance call signs `userid` alone: the request never changes (dayuanren.md, Balance).
        self._balance = HttpRequest(
            method="POST",
            url=base + BALANCE_PATH,
            headers=_HEADERS,
            body=encode_form({"userid": self._userid, "sign": sign({"userid": self._userid}, self._apikey)}),
        )

    def build_submit(self, charge: Charge) -> HttpRequest:
        if charge.quantity != 1:
            raise ValueError(f"dayuanren has no quantity field: one unit per order, not {charge.quantity}")
        yuan, cents = divmod(charge.face_value_cents, 100)
        if cents or yuan < 1:
            raise ValueError(f"dayuanren amounts are whole yuan, not {charge.face_value_cents} cents")
        # Already in key order: amount, mobile, notify_url, out_trade_num, price, product_id (then userid).
        values = (
            ("amount", str(yuan)),
            ("mobile", charge.account),
            ("notify_url", charge.callback_url),
            ("out_trade_num", charge.upstream_order_id),
            ("price", yuan_text(charge.max_cost_cents)),
            ("product_id", charge.sku),
        )
        return self._request(self._submit_url, values)

    def parse_submit(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        answer = http_level_reply(upstream_order_id, reply, "submit")
        if answer is not None:
            return answer
        try:
            errno, message, data = _envelope(reply.body)
        except Unreadable as problem:
            return unknown_reply(upstream_order_id, reading_problem(reply, problem))
        if errno != "0":
            return SupplierReply(
                upstream_order_id=upstream_order_id,
                verdict=self._codes.verdict(errno),
                code=errno,
                message=message,
            )
        if not isinstance(data, dict):
            # Accepted, but by a reply we cannot read: a query must say what became of it.
            return unknown_reply(upstream_order_id, f"accepted without data: {excerpt(reply.body)}", errno)
        echoed = data.get("out_trade_num")
        if echoed is not None and echoed != upstream_order_id:
            return unknown_reply(upstream_order_id, f"reply is about order {quoted(echoed)}", errno)
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=Verdict.PROCESSING,
            code=errno,
            message=message,
            supplier_order_id=_identifier(data.get("order_number")),
            cost_cents=optional_cents(data.get("total_price")),
        )

    def build_query(self, upstream_order_ids: Sequence[str], timestamp: float) -> HttpRequest:
        if not 1 <= len(upstream_order_ids) <= MAX_QUERY_BATCH:
            raise ValueError(
                f"dayuanren queries 1 to {MAX_QUERY_BATCH} orders, not {len(upstream_order_ids)}"
            )
        if any("," in upstream_order_id or not upstream_order_id for upstream_order_id in upstream_order_ids):
            raise ValueError("upstream order ids in a dayuanren query must be non-empty and free of commas")
        # dayuanren's query carries no timestamp; the argument is part of the adapter contract.
        return self._request(self._query_url, (("out_trade_nums", ",".join(upstream_order_ids)),))

    def parse_query(self, upstream_order_ids: Sequence[str], reply: HttpReply) -> Mapping[str, SupplierReply]:
        answers: dict[str, SupplierReply] = {}
        for upstream_order_id in upstream_order_ids:
            answer = http_level_reply(upstream_order_id, reply, "query")
            if answer is None:
                break  # the status alone decides for every id or for none
            answers[upstream_order_id] = answer
        else:
            return answers
        # A refused or unreadable query says nothing about the orders it names: all stay unknown.
        try:
            errno, message, data = _envelope(reply.body)
        except Unreadable as problem:
            return _all_unknown(upstream_order_ids, reading_problem(reply, problem))
        if errno != "0":
            return _all_unknown(upstream_order_ids, message, errno)
        if not isinstance(data, list):
            return _all_unknown(upstream_order_ids, f"data is not a list: {excerpt(reply.body)}", errno)
        return _entries(upstream_order_ids, data, errno, message)

    def build_balance(self, timestamp: float) -> HttpRequest:
        # dayuanren's balance call carries no timestamp; the argument is part of the adapter contract.
        return self._balance

    def parse_balance(self, reply: HttpReply) -> BalanceReply:
        """`data.balance` (a decimal string or a number) of an `errno` 0 reply; else unknown."""
        unreadable = http_level_balance(reply)
        if unreadable is not None:
            return unreadable
        try:
            errno, message, data = _envelope(reply.body)
        except Unreadable as problem:
            return unknown_balance(reply, problem)
        if errno != "0":
            return BalanceReply(balance_cents=None, code=errno, message=message or f"errno {errno}")
        balance = optional_cents(data.get("balance")) if isinstance(data, dict) else None
        if balance is None:
            return unknown_balance(reply, "data has no readable balance", errno)
        return BalanceReply(balance_cents=balance, code=errno)

    def parse_callback(self, callback: InboundCallback) -> SupplierReply:
        try:
            fields = decode_form(callback.body)
        except ValueError as error:
            raise MalformedMessage(
                f"callback is not a UTF-8 form ({error}): {excerpt(callback.body)}"
            ) from error
        signature = fields.get("sign")
        if not signature:
            raise MalformedMessage("callback has no sign")
        # Every received field is signed, so fields the supplier adds later still verify.
        if not _verifies(sign(fields, self._apikey), signature):
            raise BadSignature("callback signature does not verify")
        missing = [key for key in CALLBACK_REQUIRED if not fields.get(key)]
        if missing:
            raise MalformedMessage(f"callback lacks {', '.join(missing)}")
        if fields["userid"] != self._userid:
            # Signed, but for another merchant account: not proof that this supplier speaks for us.
            raise BadSignature(f"callback is for userid {fields['userid']!r}, not ours")
        upstream_order_id = fields["out_trade_num"]
        verdict = ORDER_STATES.get(fields["state"], Verdict.UNKNOWN)
        delivered_cents = None
        if verdict is Verdict.PARTIAL:
            amount = fields.get("charge_amount")
            try:
                delivered_cents = parse_cents(amount or "")
            except ValueError as error:
                raise MalformedMessage(
                    f"partial callback charge_amount {amount!r} is not an amount"
                ) from error
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=verdict,
            message=fields.get("remark") or None,
            supplier_order_id=fields.get("order_number") or None,
            delivered_cents=delivered_cents,
        )

    def acknowledge(self) -> HttpResponse:
        return _ACK

    def _request(self, url: str, values: Sequence[tuple[str, str]]) -> HttpRequest:
        """Sign and encode `values`, already in key order and all sorting before `userid`."""
        signature = _md5("&".join(f"{key}={value}" for key, value in values) + self._sign_suffix)
        body = "&".join(f"{key}={self._form_value(value)}" for key, value in values)
        return HttpRequest(
            method="POST", url=url, headers=_HEADERS, body=f"{body}{self._userid_form}{signature}".encode()
        )

    def _form_value(self, value: str) -> str:
        """`quote_plus(value)`, without calling it for ids, amounts and numbers, which it leaves as is."""
        if _UNRESERVED.fullmatch(value):
            return value
        if value != self._quoted[0]:
            self._quoted = (value, quote_plus(value))
        return self._quoted[1]


def _entries(
    upstream_order_ids: Sequence[str], data: list[object], errno: str, message: str | None
) -> dict[str, SupplierReply]:
    """Each asked id's answer in a readable query reply; ids absent from it are not found."""
    asked = set(upstream_order_ids)
    answers: dict[str, SupplierReply] = {}
    unreadable = 0
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("out_trade_num"), str):
            unreadable += 1
            continue
        upstream_order_id = entry["out_trade_num"]
        if upstream_order_id not in asked:
            continue  # an answer to a question we did not ask proves nothing
        answer = _entry(upstream_order_id, entry, errno, message)
        earlier = answers.get(upstream_order_id)
        if earlier is not None and earlier != answer:
            answer = unknown_reply(upstream_order_id, "the query reply reports this order twice, differently")
        answers[upstream_order_id] = answer
    for upstream_order_id in upstream_order_ids:
        if upstream_order_id in answers:
            continue
        if unreadable:
            # An unreadable entry may be this order's: absence is no proof it was never charged.
            answers[upstream_order_id] = unknown_reply(
                upstream_order_id, f"not in the query reply, which has {unreadable} unreadable entries"
            )
        else:
            answers[upstream_order_id] = SupplierReply(
                upstream_order_id=upstream_order_id,
                verdict=Verdict.NOT_FOUND,
                code=errno,
                message="not in the query reply",
            )
    return {upstream_order_id: answers[upstream_order_id] for upstream_order_id in upstream_order_ids}


def _entry(
    upstream_order_id: str, entry: Mapping[str, object], errno: str, message: str | None
) -> SupplierReply:
    """One `data` entry of a query reply."""
    state = _identifier(entry.get("state"))
    verdict = ORDER_STATES.get(state or "", Verdict.UNKNOWN)
    delivered_cents = None
    if verdict is Verdict.PARTIAL:
        delivered_cents = optional_cents(entry.get("charge_amount"))
        if delivered_cents is None:
            return unknown_reply(
                upstream_order_id, f"partial without a readable charge_amount: {quoted(entry)}", errno
            )
    return SupplierReply(
        upstream_order_id=upstream_order_id,
        verdict=verdict,
        code=errno,
        message=message if verdict is not Verdict.UNKNOWN else f"state {state!r}",
        supplier_order_id=_identifier(entry.get("order_number")),
        delivered_cents=delivered_cents,
    )


def _envelope(body: bytes) -> tuple[str, str | None, object]:
    """`errno`, `errmsg` and `data` of a reply body, or `Unreadable`."""
    reply = json_object(body)
    errno = _identifier(reply.get("errno"))
    if errno is None or _ERRNO.fullmatch(errno) is None:
        raise Unreadable("no integer errno")
    return errno, optional_text(reply.get("errmsg")), reply.get("data")


def _all_unknown(
    upstream_order_ids: Sequence[str], message: str | None, code: str | None = None
) -> dict[str, SupplierReply]:
    return {
        upstream_order_id: unknown_reply(upstream_order_id, message, code)
        for upstream_order_id in upstream_order_ids
    }


def _identifier(value: object) -> str | None:
    """An id or code the supplier may send as a JSON string or number; never a bool or float."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
