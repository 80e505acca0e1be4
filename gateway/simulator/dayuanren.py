"""The dayuanren protocol from the supplier's side: reads its requests, writes its replies and callbacks.

Decides nothing (the engine does). Verifies and signs with its own code (`signatures.dayuanren`),
written from dayuanren.md as a supplier would: nothing here comes from `adapters`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final
from urllib.parse import urlencode

import orjson

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
from gateway.simulator.money import read_yuan, yuan_text
from gateway.simulator.signatures.dayuanren import sign
from gateway.simulator.traffic import Operation

SUBMIT_PATH: Final = "/yrapi.php/index/recharge"
QUERY_PATH: Final = "/yrapi.php/index/check"
BALANCE_PATH: Final = "/yrapi.php/index/user"
MAX_QUERY_BATCH: Final = 50
"""The most `out_trade_nums` one query may name (dayuanren.md)."""
MAX_FORM_FIELDS: Final = 100
"""A callback has eleven fields; the bound caps the work an oversized body can cause."""

_FORM: Final = "application/x-www-form-urlencoded"
_JSON: Final = "application/json; charset=utf-8"
_OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(
    {SUBMIT_PATH: Operation.SUBMIT, QUERY_PATH: Operation.QUERY, BALANCE_PATH: Operation.BALANCE}
)
_SUBMIT_FIELDS: Final = ("out_trade_num", "product_id", "mobile", "notify_url", "amount")
# THROTTLED is absent: it is answered with HTTP 429 (see `rejection_reply`).
_REFUSALS: Final[Mapping[Refusal, tuple[int, str]]] = MappingProxyType(
    {
        Refusal.BAD_SIGNATURE: (1001, "签名错误"),
        Refusal.UNKNOWN_CREDENTIAL: (1001, "商户不存在"),
        Refusal.BAD_REQUEST: (1, "参数错误"),
        Refusal.UNKNOWN_PRODUCT: (1003, "产品不存在或已下架"),
        Refusal.REFUSED: (1, "通道维护中"),
        Refusal.BALANCE_INSUFFICIENT: (1002, "余额不足"),
        Refusal.DUPLICATE: (1005, "相同订单号不能提单"),
    }
)
_STATES: Final[Mapping[ChargeState, int]] = MappingProxyType(
    {
        ChargeState.CHARGING: 0,
        ChargeState.SUCCEEDED: 1,
        ChargeState.FAILED: 2,
        ChargeState.PARTIAL: 3,
        # Never reported: queries see charged entries only, callbacks final ones.
        ChargeState.NOT_CHARGED: -1,
    }
)
_REMARKS: Final[Mapping[ChargeState, str]] = MappingProxyType(
    {
        ChargeState.CHARGING: "充值中",
        ChargeState.SUCCEEDED: "充值成功",
        ChargeState.FAILED: "充值失败",
        ChargeState.PARTIAL: "部分充值成功",
        ChargeState.NOT_CHARGED: "订单已取消",
    }
)


class DayuanrenFront:
    """dayuanren as one supplier with these credentials serves it.

    Throttling is answered with HTTP 429 and Retry-After rather than dayuanren's catch-all errno 1:
    the gateway then slows down instead of only routing the order elsewhere. The `price` cap is
    read but not enforced (no refusal for errno 1004), since the engine decides every refusal.
    """

    protocol: ClassVar[str] = "dayuanren"
    routes: ClassVar[tuple[tuple[str, str], ...]] = (
        ("POST", SUBMIT_PATH),
        ("POST", QUERY_PATH),
        ("POST", BALANCE_PATH),
    )
    credential_keys: ClassVar[tuple[str, ...]] = ("userid", "apikey")
    supports_partial: ClassVar[bool] = True
    carries_notify_url: ClassVar[bool] = True

    __slots__ = ("_apikey", "_userid")

    def __init__(self, credentials: Mapping[str, str]) -> None:
        require_credentials(self.protocol, self.credential_keys, credentials)
        self._userid = credentials["userid"]
        self._apikey = credentials["apikey"]

    def read(self, request: Incoming) -> Reading:
        operation = _OPERATIONS.get(request.path, Operation.OTHER)
        try:
            # UTF-8 twice over: the body itself, and the bytes its percent escapes stand for.
            fields = read_form(request.body.decode("utf-8"), encoding="utf-8", max_fields=MAX_FORM_FIELDS)
        except ValueError:  # UnicodeDecodeError included
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)
        if fields.get("userid") != self._userid:
            return Rejection(refusal=Refusal.UNKNOWN_CREDENTIAL, operation=operation)
        signature = fields.get("sign", "")
        # Bytes: compare_digest refuses non-ASCII str. Senders differ in hex case.
        if not hmac.compare_digest(sign(fields, self._apikey).encode(), signature.upper().encode()):
            return Rejection(refusal=Refusal.BAD_SIGNATURE, operation=operation)
        if operation is Operation.SUBMIT:
            return _submit(fields)
        if operation is Operation.QUERY:
            return _query(fields)
        if operation is Operation.BALANCE:
            return BalanceRequest()
        return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)

    def supplier_order_id(self, sequence: int) -> str:
        return f"Y{sequence:016d}"

    def submit_reply(self, entry: LedgerEntry) -> HttpReply:
        data: dict[str, object] = {
            "order_number": entry.supplier_order_id,
            "out_trade_num": entry.upstream_order_id,
        }
        if entry.cost_cents is not None:
            data["total_price"] = yuan_text(entry.cost_cents)
        return _reply(0, "提交成功", data)

    def balance_reply(self, balance_cents: int) -> HttpReply:
        numeric = self._userid.isascii() and self._userid.isdigit()
        user_id: object = int(self._userid) if numeric else self._userid  # dayuanren.md shows a number
        return _reply(0, "ok", {"id": user_id, "username": self._userid, "balance": yuan_text(balance_cents)})

    def query_reply(self, query: QueryRequest, found: Mapping[str, LedgerEntry]) -> HttpReply:
        data = [
            {
                "out_trade_num": entry.upstream_order_id,
                "order_number": entry.supplier_order_id,
                "state": _STATES[entry.state],
                "charge_amount": yuan_text(_delivered_cents(entry)),
                "voucher": _voucher(entry),
            }
            for upstream_order_id in query.upstream_order_ids
            if (entry := found.get(upstream_order_id)) is not None
        ]
        return _reply(0, "ok", data)

    def rejection_reply(self, rejection: Rejection) -> HttpReply:
        if rejection.refusal is Refusal.THROTTLED:
            return TOO_MANY_REQUESTS
        return _reply(*_REFUSALS[rejection.refusal])

    def callback(self, entry: LedgerEntry, url: str) -> HttpRequest:
        fields = {
            "userid": self._userid,
            "order_number": entry.supplier_order_id,
            "out_trade_num": entry.upstream_order_id,
            "otime": str(int(entry.finished_at or 0.0)),
            "state": str(_STATES[entry.state]),
            "mobile": entry.account,
            "remark": _REMARKS[entry.state],
            "charge_amount": yuan_text(_delivered_cents(entry)),
            "voucher": _voucher(entry),
            "charge_kami": "",
        }
        fields["sign"] = sign(fields, self._apikey)
        # urlencode quotes keys and values with quote_plus over UTF-8, in the mapping's order.
        return HttpRequest(
            method="POST", url=url, headers={"Content-Type": _FORM}, body=urlencode(fields).encode("ascii")
        )

    def forged_callbacks(self, entry: LedgerEntry, url: str) -> tuple[HttpRequest, ...]:
        impostor = DayuanrenFront({"userid": self._userid, "apikey": guessed(self._apikey)})
        return (impostor.callback(entry.opposite(), url),)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"success"


def _submit(fields: Mapping[str, str]) -> Reading:
    upstream_order_id = fields.get("out_trade_num", "")
    try:
        if any(not fields.get(key) for key in _SUBMIT_FIELDS):
            raise ValueError("a field is missing")
        face_value_cents = read_yuan(fields["amount"])
        if "price" in fields:
            read_yuan(fields["price"])
    except ValueError:
        face_value_cents = 0
    if face_value_cents == 0:
        ids = (upstream_order_id,) if upstream_order_id else ()
        return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.SUBMIT, upstream_order_ids=ids)
    return SubmitRequest(
        upstream_order_id=upstream_order_id,
        account=fields["mobile"],
        sku=fields["product_id"],
        face_value_cents=face_value_cents,
        notify_url=fields["notify_url"],
    )


def _query(fields: Mapping[str, str]) -> Reading:
    upstream_order_ids = tuple(fields.get("out_trade_nums", "").split(","))
    if not 1 <= len(upstream_order_ids) <= MAX_QUERY_BATCH or not all(upstream_order_ids):
        return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.QUERY)
    return QueryRequest(upstream_order_ids=upstream_order_ids)


def _delivered_cents(entry: LedgerEntry) -> int:
    """What reached the account: `charge_amount` in replies and callbacks."""
    if entry.state is ChargeState.PARTIAL:
        return entry.delivered_cents or 0
    if entry.state is ChargeState.SUCCEEDED and entry.face_value_cents is not None:
        return entry.face_value_cents * entry.quantity
    return 0


def _voucher(entry: LedgerEntry) -> str:
    """The operator's serial number, which only a delivery has."""
    delivered = entry.state in {ChargeState.SUCCEEDED, ChargeState.PARTIAL}
    return "OP" + entry.supplier_order_id[1:] if delivered else ""


def _reply(errno: int, errmsg: str, data: object = None) -> HttpReply:
    return reply(200, _JSON, orjson.dumps({"errno": errno, "errmsg": errmsg, "data": data}))
