"""The fulu protocol from the supplier's side: reads its requests, writes its replies and callbacks.

Decides nothing (the engine does). Verifies and signs with its own code (`signatures.fulu`), written
from fulu.md as a supplier would: nothing here comes from `adapters`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final

from gateway.simulator.chinatime import china_time
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
from gateway.simulator.signatures.fulu import compact_json, sign_params, sign_text
from gateway.simulator.traffic import Operation

PATH: Final = "/api/getway"
MOBILE_SUBMIT: Final = "fulu.order.mobile.add"
DIRECT_SUBMIT: Final = "fulu.order.direct.add"
QUERY: Final = "fulu.order.info.get"
BALANCE: Final = "fulu.user.info.get"
TIME_PATTERN: Final = "%Y-%m-%d %H:%M:%S"
"""`YYYY-MM-DD HH:MM:SS` in China time, as fulu writes timestamps."""

_JSON: Final = "application/json; charset=utf-8"
_OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(
    {
        MOBILE_SUBMIT: Operation.SUBMIT,
        DIRECT_SUBMIT: Operation.SUBMIT,
        QUERY: Operation.QUERY,
        BALANCE: Operation.BALANCE,
    }
)
_REFUSALS: Final[Mapping[Refusal, tuple[int, str]]] = MappingProxyType(
    {
        Refusal.BAD_SIGNATURE: (1001, "签名错误"),
        Refusal.UNKNOWN_CREDENTIAL: (1002, "app_key不存在"),
        Refusal.BAD_REQUEST: (2001, "参数错误"),
        Refusal.UNKNOWN_PRODUCT: (3001, "商品不存在"),
        Refusal.REFUSED: (3003, "库存不足"),
        Refusal.BALANCE_INSUFFICIENT: (3004, "余额不足"),
        Refusal.DUPLICATE: (3007, "外部订单号已存在"),
    }
)
_STATES: Final[Mapping[ChargeState, str]] = MappingProxyType(
    {
        ChargeState.CHARGING: "processing",
        ChargeState.SUCCEEDED: "success",
        ChargeState.PARTIAL: "success",  # fulu cannot say "partly": never drawn, as supports_partial is False
        ChargeState.FAILED: "failed",
        ChargeState.NOT_CHARGED: "failed",
    }
)


class _Invalid(Exception):
    """A request field is missing or of the wrong type (fulu's 2001)."""


class FuluFront:
    """fulu as one supplier with these credentials serves it."""

    protocol: ClassVar[str] = "fulu"
    routes: ClassVar[tuple[tuple[str, str], ...]] = (("POST", PATH),)
    credential_keys: ClassVar[tuple[str, ...]] = ("app_key", "app_secret")
    supports_partial: ClassVar[bool] = False
    carries_notify_url: ClassVar[bool] = False

    __slots__ = ("_app_key", "_secret")

    def __init__(self, credentials: Mapping[str, str]) -> None:
        require_credentials(self.protocol, self.credential_keys, credentials)
        self._app_key = credentials["app_key"]
        self._secret = credentials["app_secret"]

    def read(self, request: Incoming) -> Reading:
        try:
            params = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.OTHER)
        if not isinstance(params, dict):
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.OTHER)
        method = params.get("method")
        operation = _OPERATIONS.get(method, Operation.OTHER) if isinstance(method, str) else Operation.OTHER
        if params.get("app_key") != self._app_key:
            return Rejection(refusal=Refusal.UNKNOWN_CREDENTIAL, operation=operation)
        signature = params.get("sign")
        try:
            expected = sign_params(params, self._secret)
        except (ValueError, RecursionError):  # NaN, a lone surrogate, nesting past the encoder's depth
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)
        # Bytes: compare_digest refuses non-ASCII str. Senders differ in hex case.
        if not isinstance(signature, str) or not hmac.compare_digest(
            expected.encode(), signature.lower().encode()
        ):
            return Rejection(refusal=Refusal.BAD_SIGNATURE, operation=operation)
        if method == BALANCE:
            return BalanceRequest()  # its biz_content is "{}": nothing more to read
        try:
            biz = json.loads(_text(params, "biz_content"))
            if not isinstance(biz, dict):
                raise _Invalid("biz_content")
            upstream_order_id = _text(biz, "customer_order_no")
            if method == MOBILE_SUBMIT:
                return SubmitRequest(
                    upstream_order_id=upstream_order_id,
                    account=_text(biz, "charge_phone"),
                    sku=None,
                    face_value_cents=_positive(biz, "charge_value") * 100,
                )
            if method == DIRECT_SUBMIT:
                return SubmitRequest(
                    upstream_order_id=upstream_order_id,
                    account=_text(biz, "charge_account"),
                    sku=str(_positive(biz, "product_id")),
                    face_value_cents=None,
                    quantity=_positive(biz, "buy_num"),
                )
            if method == QUERY:
                return QueryRequest(upstream_order_ids=(upstream_order_id,))
            raise _Invalid("method")
        except (_Invalid, ValueError, RecursionError):
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)

    def supplier_order_id(self, sequence: int) -> str:
        return f"F{sequence:016d}"

    def submit_reply(self, entry: LedgerEntry) -> HttpReply:
        return self._reply(0, "成功", _order(entry))

    def query_reply(self, query: QueryRequest, found: Mapping[str, LedgerEntry]) -> HttpReply:
        entry = found.get(query.upstream_order_ids[0])
        return self._reply(3006, "订单不存在") if entry is None else self._reply(0, "成功", _order(entry))

    def balance_reply(self, balance_cents: int) -> HttpReply:
        # `balance` and `user_name` are fulu.md's (assumed) field names.
        return self._reply(0, "成功", {"balance": yuan_text(balance_cents), "user_name": self._app_key})

    def rejection_reply(self, rejection: Rejection) -> HttpReply:
        if rejection.refusal is Refusal.THROTTLED:
            return TOO_MANY_REQUESTS  # fulu has no throttling code
        return self._reply(*_REFUSALS[rejection.refusal])

    def callback(self, entry: LedgerEntry, url: str) -> HttpRequest:
        delivered = entry.state in {ChargeState.SUCCEEDED, ChargeState.PARTIAL}
        fields: dict[str, str] = {
            "order_id": entry.supplier_order_id,
            "charge_finish_time": china_time(entry.finished_at or 0.0, TIME_PATTERN),
            "customer_order_no": entry.upstream_order_id,
            "order_status": "success" if delivered else "failed",
            "recharge_description": "充值成功" if delivered else "充值失败",
        }
        if entry.sku is not None:
            fields["product_id"] = entry.sku
        if entry.cost_cents is not None:
            fields["price"] = yuan_text(entry.cost_cents)
        fields["buy_num"] = str(entry.quantity)
        if delivered:
            fields["operator_serial_number"] = "OP" + entry.supplier_order_id[1:]
        fields["sign"] = sign_params(fields, self._secret)
        return HttpRequest(
            method="POST", url=url, headers={"Content-Type": _JSON}, body=compact_json(fields).encode()
        )

    def forged_callbacks(self, entry: LedgerEntry, url: str) -> tuple[HttpRequest, ...]:
        impostor = FuluFront({"app_key": self._app_key, "app_secret": guessed(self._secret)})
        return (impostor.callback(entry.opposite(), url),)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"success"

    def _reply(self, code: int, message: str, result: Mapping[str, object] | None = None) -> HttpReply:
        text = "" if result is None else compact_json(result)
        envelope = {"code": code, "message": message, "result": text, "sign": sign_text(text, self._secret)}
        return reply(200, _JSON, compact_json(envelope).encode())


def _order(entry: LedgerEntry) -> dict[str, object]:
    """The `result` object of replies about one order."""
    order: dict[str, object] = {
        "order_id": entry.supplier_order_id,
        "customer_order_no": entry.upstream_order_id,
        "order_state": _STATES[entry.state],
        "charge_account": entry.account,
        "buy_num": entry.quantity,
    }
    if entry.sku is not None:
        order["product_id"] = int(entry.sku)
    if entry.cost_cents is not None:
        order["order_price"] = yuan_text(entry.cost_cents)
    return order


def _text(fields: Mapping[str, object], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise _Invalid(key)
    return value


def _positive(fields: Mapping[str, object], key: str) -> int:
    value = fields.get(key)
    # bool is an int to Python, never to fulu.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Invalid(key)
    return value
