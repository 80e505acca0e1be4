"""The juhe protocol (protocols/juhe.md): query-string requests, JSON replies, form callbacks.

Pure: builds requests and classifies replies and callbacks; no sockets, no clock reads.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar, Final, Literal
from urllib.parse import quote

from adapters.amounts import optional_cents
from adapters.batches import single_order
from adapters.codes import CodeTable
from adapters.excerpt import excerpt
from adapters.forms import RepeatedField, read_fields
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
    quoted,
    reading_problem,
    unknown_balance,
    unknown_reply,
)
from adapters.settings import settings_problems
from adapters.transport import http_level_reply, retry_after_seconds

SUBMIT_PATH: Final = "/ofpay/mobile/onlineorder"
QUERY_PATH: Final = "/ofpay/mobile/ordersta"
BALANCE_PATH: Final = "/ofpay/mobile/yue"

FACE_VALUES_YUAN: Final = (5, 10, 20, 30, 50, 100, 200, 300, 500)
"""The only top-ups juhe sells; `cardnum` names one of them."""

SUBMIT_CODES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {
        "10001": Verdict.NOT_EXECUTED,
        "10012": Verdict.THROTTLED,
        "208501": Verdict.NOT_EXECUTED,
        "208503": Verdict.BALANCE_INSUFFICIENT,
        "208505": Verdict.ACCOUNT_INVALID,
        "208508": Verdict.NOT_EXECUTED,
        "208509": Verdict.UNKNOWN,
        "208515": Verdict.UNKNOWN,
        "208517": Verdict.UNKNOWN,
    }
)
"""Submit `error_code`s other than 0 (juhe.md); anything unlisted is unknown."""

QUERY_CODES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {"10012": Verdict.THROTTLED, "208516": Verdict.NOT_FOUND}
)
"""Query `error_code`s. A refused query says nothing about the order, so the submit table's "not
executed" codes must not leak in here; a throttled query leaves the order unknown (see `_classify`)."""

GAME_STATES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {"0": Verdict.PROCESSING, "1": Verdict.SUCCEEDED, "9": Verdict.FAILED}
)
"""`result.game_state` of submit and query replies."""

CALLBACK_STATES: Final[Mapping[str, Verdict]] = MappingProxyType(
    {"1": Verdict.SUCCEEDED, "9": Verdict.FAILED}
)
"""`sta` of callbacks: juhe calls back only final results, so anything else is unknown."""

CALLBACK_FIELDS: Final = ("sporder_id", "orderid", "sta", "sign")
"""The callback fields without which nothing can be verified or applied (`err_msg` is optional)."""

_CARDNUMS: Final[Mapping[int, str]] = MappingProxyType({yuan * 100: str(yuan) for yuan in FACE_VALUES_YUAN})
_ACK: Final = HttpResponse(status=200, content_type="text/plain", body=b"success")


def submit_sign(openid: str, key: str, phoneno: str, cardnum: str, orderid: str) -> str:
    """lower(md5(openid + key + phoneno + cardnum + orderid)) over UTF-8, as juhe.md signs a submit."""
    text = openid + key + phoneno + cardnum + orderid
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def balance_sign(openid: str, key: str, timestamp: str) -> str:
    """lower(md5(openid + key + timestamp)) over UTF-8, as juhe.md signs a balance call."""
    return hashlib.md5((openid + key + timestamp).encode(), usedforsecurity=False).hexdigest()


def callback_sign(key: str, sporder_id: str, orderid: str) -> str:
    """lower(md5(key + sporder_id + orderid)) over UTF-8, as juhe.md signs a callback."""
    return hashlib.md5((key + sporder_id + orderid).encode(), usedforsecurity=False).hexdigest()


class JuheAdapter:
    """juhe for one supplier: URLs, the quoted key and the signing prefixes are computed here once.

    juhe names a product by its face value alone (`cardnum`), so the offer's sku is not sent, and it
    sells one top-up per request: `build_submit` raises `ValueError` for a charge juhe cannot take
    (not a mainland mobile number, a face value juhe does not sell, a quantity other than 1).
    """

    protocol: ClassVar[str] = "juhe"
    credential_keys: ClassVar[tuple[str, ...]] = ("key", "openid")
    # sign = md5(key + sporder_id + orderid): `sta` and `err_msg` are not in it.
    callback_signs_result: ClassVar[bool] = False
    max_query_batch: ClassVar[int] = 1

    __slots__ = (
        "_balance_url",
        "_callback_md5",
        "_key_param",
        "_query_codes",
        "_query_url",
        "_submit_codes",
        "_submit_md5",
        "_submit_url",
    )

    def __init__(self, settings: AdapterSettings) -> None:
        problems = settings_problems(settings, self.credential_keys)
        if problems:
            raise InvalidSettings(problems)
        key = settings.credentials["key"]
        base = settings.base_url.rstrip("/")
        self._key_param = "&key=" + _param(key)
        self._submit_url = base + SUBMIT_PATH + "?phoneno="
        self._query_url = base + QUERY_PATH + "?orderid="
        self._balance_url = base + BALANCE_PATH + "?timestamp="
        # Every signature starts with the same secret bytes: hash them once, copy per message.
        self._submit_md5 = hashlib.md5((settings.credentials["openid"] + key).encode(), usedforsecurity=False)
        self._callback_md5 = hashlib.md5(key.encode(), usedforsecurity=False)
        self._submit_codes = CodeTable(SUBMIT_CODES, settings.codes)
        self._query_codes = CodeTable(QUERY_CODES, settings.codes)

    def build_submit(self, charge: Charge) -> HttpRequest:
        if charge.account_kind is not AccountKind.MOBILE_CN:
            raise ValueError(
                f"juhe tops up mainland mobile numbers only, not {charge.account_kind.value} accounts"
            )
        cardnum = _CARDNUMS.get(charge.face_value_cents)
        if cardnum is None:
            yuan, cents = divmod(charge.face_value_cents, 100)
            raise ValueError(
                f"juhe sells no {yuan}.{cents:02d} yuan top-up; its face values are "
                + ", ".join(map(str, FACE_VALUES_YUAN))
            )
        if charge.quantity != 1:
            raise ValueError(f"juhe tops up one face value per order, not a quantity of {charge.quantity}")
        phoneno, orderid = charge.account, charge.upstream_order_id
        digest = self._submit_md5.copy()
        digest.update(f"{phoneno}{cardnum}{orderid}".encode())
        url = (
            f"{self._submit_url}{_param(phoneno)}&cardnum={cardnum}&orderid={_param(orderid)}"
            f"{self._key_param}&sign={digest.hexdigest()}"
        )
        return HttpRequest(method="GET", url=url)

    def parse_submit(self, upstream_order_id: str, reply: HttpReply) -> SupplierReply:
        return http_level_reply(upstream_order_id, reply, "submit") or self._classify(
            upstream_order_id, reply, "submit"
        )

    def build_query(self, upstream_order_ids: Sequence[str], timestamp: float) -> HttpRequest:
        upstream_order_id = single_order(upstream_order_ids, self.protocol)
        return HttpRequest(method="GET", url=f"{self._query_url}{_param(upstream_order_id)}{self._key_param}")

    def parse_query(self, upstream_order_ids: Sequence[str], reply: HttpReply) -> Mapping[str, SupplierReply]:
        upstream_order_id = single_order(upstream_order_ids, self.protocol)
        answer = http_level_reply(upstream_order_id, reply, "query") or self._classify(
            upstream_order_id, reply, "query"
        )
        return {upstream_order_id: answer}

    def build_balance(self, timestamp: float) -> HttpRequest:
        """`yue` with whole Unix seconds, signed as juhe.md says."""
        seconds = str(int(timestamp))
        # A balance sign starts with the same secret bytes as a submit's: the timestamp follows them.
        digest = self._submit_md5.copy()
        digest.update(seconds.encode())
        return HttpRequest(
            method="GET", url=f"{self._balance_url}{seconds}{self._key_param}&sign={digest.hexdigest()}"
        )

    def parse_balance(self, reply: HttpReply) -> BalanceReply:
        """`result.money` (a decimal string or a number) of an `error_code` 0 reply; else unknown."""
        unreadable = http_level_balance(reply)
        if unreadable is not None:
            return unreadable
        try:
            code, message, result = _envelope(reply.body)
        except Unreadable as problem:
            return unknown_balance(reply, problem)
        if code != "0":
            return BalanceReply(balance_cents=None, code=code, message=message or f"error_code {code}")
        balance = optional_cents(result.get("money")) if result is not None else None
        if balance is None:
            return unknown_balance(reply, "result has no readable money", code)
        return BalanceReply(balance_cents=balance, code=code)

    def parse_callback(self, callback: InboundCallback) -> SupplierReply:
        """Reads the form body strictly as UTF-8; `sta` and `err_msg` are not covered by juhe's sign."""
        try:
            fields = read_fields(callback.body.decode("utf-8"), max_fields=64, strict=False)
        except RepeatedField as error:
            # A repeated field would let whoever reads the form pick a different value than we did.
            raise MalformedMessage(f"callback repeats a field: {excerpt(callback.body)}") from error
        except ValueError as error:  # UnicodeDecodeError included
            raise MalformedMessage(f"callback is not a UTF-8 form: {excerpt(callback.body)}") from error
        missing = [name for name in CALLBACK_FIELDS if name not in fields]
        if missing or not fields["orderid"]:
            raise MalformedMessage(f"callback lacks {', '.join(missing) or 'orderid'}")
        sporder_id, upstream_order_id = fields["sporder_id"], fields["orderid"]
        digest = self._callback_md5.copy()
        digest.update(f"{sporder_id}{upstream_order_id}".encode())
        # A signature is hex: nothing non-ASCII reaches case mapping. Compared as bytes, since
        # compare_digest refuses non-ASCII str.
        signature = fields["sign"]
        if not signature.isascii() or not hmac.compare_digest(
            digest.hexdigest().encode(), signature.lower().encode()
        ):
            raise BadSignature("callback signature does not verify")
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=CALLBACK_STATES.get(fields["sta"], Verdict.UNKNOWN),
            message=fields.get("err_msg") or None,
            supplier_order_id=sporder_id or None,
        )

    def acknowledge(self) -> HttpResponse:
        return _ACK

    def _classify(
        self, upstream_order_id: str, reply: HttpReply, operation: Literal["submit", "query"]
    ) -> SupplierReply:
        try:
            code, message, result = _envelope(reply.body)
        except Unreadable as problem:
            return unknown_reply(upstream_order_id, reading_problem(reply, problem))
        if code != "0":
            codes = self._submit_codes if operation == "submit" else self._query_codes
            verdict = codes.verdict(code)
            if verdict is not Verdict.THROTTLED:
                return SupplierReply(
                    upstream_order_id=upstream_order_id, verdict=verdict, code=code, message=message
                )
            return SupplierReply(
                upstream_order_id=upstream_order_id,
                # Throttling stops a query, not the order: it stays unknown until a later query answers.
                verdict=Verdict.THROTTLED if operation == "submit" else Verdict.UNKNOWN,
                code=code,
                message=message,
                retry_after_seconds=retry_after_seconds(reply.headers),
            )
        state = result.get("game_state") if result is not None else None
        if isinstance(state, int) and not isinstance(state, bool):
            state = str(state)
        if result is None or not isinstance(state, str):
            return unknown_reply(upstream_order_id, f"result has no game_state: {excerpt(reply.body)}", code)
        echoed = result.get("uorderid")
        if echoed is not None and echoed != upstream_order_id:
            return unknown_reply(upstream_order_id, f"reply is about order {quoted(echoed)}", code)
        sporder_id = result.get("sporder_id")
        return SupplierReply(
            upstream_order_id=upstream_order_id,
            verdict=GAME_STATES.get(state, Verdict.UNKNOWN),
            code=code,
            message=message,
            supplier_order_id=sporder_id if isinstance(sporder_id, str) and sporder_id else None,
            # A submit reports `ordercash` as a JSON number, read back exactly through its repr
            # (49.25 gives "49.25"); a query reports `uordercash` as a string.
            cost_cents=optional_cents(result.get("ordercash", result.get("uordercash"))),
        )


def _envelope(body: bytes) -> tuple[str, str | None, Mapping[str, object] | None]:
    """`error_code`, `reason` and `result` of a reply body, or `Unreadable`."""
    reply = json_object(body)
    code = reply.get("error_code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise Unreadable("no integer error_code")
    result = reply.get("result")
    reason = reply.get("reason")
    return (
        str(code),
        reason if isinstance(reason, str) else None,
        result if isinstance(result, dict) else None,
    )


def _param(value: str) -> str:
    """`value` percent-encoded for a query string; ids and phone numbers skip the encoder."""
    return value if value.isascii() and value.isalnum() else quote(value, safe="")
