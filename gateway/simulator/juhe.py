"""The juhe protocol from the supplier's side: reads its requests, writes its replies and callbacks.

Decides nothing (the engine does). Verifies and signs with its own code (`signatures.juhe`), written
from juhe.md as a supplier would: nothing here comes from `adapters`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final
from urllib.parse import parse_qsl, urlencode

import orjson

from gateway.simulator.front import (
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
from gateway.simulator.signatures.juhe import balance_sign, callback_sign, submit_sign
from gateway.simulator.traffic import Operation

SUBMIT_PATH: Final = "/ofpay/mobile/onlineorder"
QUERY_PATH: Final = "/ofpay/mobile/ordersta"
BALANCE_PATH: Final = "/ofpay/mobile/yue"
FACE_VALUES_YUAN: Final = (5, 10, 20, 30, 50, 100, 200, 300, 500)
"""The only `cardnum`s juhe sells (juhe.md): phone top-ups by face value."""

_JSON: Final = "application/json;charset=utf-8"
_FORM: Final = "application/x-www-form-urlencoded"
_OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(
    {SUBMIT_PATH: Operation.SUBMIT, QUERY_PATH: Operation.QUERY, BALANCE_PATH: Operation.BALANCE}
)
_REFUSALS: Final[Mapping[Refusal, tuple[int, str]]] = MappingProxyType(
    {
        Refusal.BAD_SIGNATURE: (10001, "校验值sign错误"),
        Refusal.UNKNOWN_CREDENTIAL: (10001, "错误的请求KEY"),
        Refusal.UNKNOWN_PRODUCT: (208501, "不允许充值的手机号码及金额"),
        Refusal.REFUSED: (208508, "订单请求失败，请重试"),
        Refusal.BALANCE_INSUFFICIENT: (208503, "账户余额不足"),
        Refusal.DUPLICATE: (208509, "订单号重复"),
        Refusal.THROTTLED: (10012, "请求超过次数限制"),
    }
)
# A submit that cannot be read names no product juhe sells; any other request is simply wrong.
_BAD_SUBMIT: Final = (208501, "请求参数错误")
_BAD_REQUEST: Final = (10001, "请求参数错误")
_NOT_FOUND: Final = (208516, "订单不存在")
_STATES: Final[Mapping[ChargeState, str]] = MappingProxyType(
    {
        ChargeState.CHARGING: "0",
        ChargeState.SUCCEEDED: "1",
        ChargeState.PARTIAL: "1",  # juhe cannot say "partly": never drawn, as supports_partial is False
        ChargeState.FAILED: "9",
        ChargeState.NOT_CHARGED: "9",
    }
)
_YUAN: Final = frozenset(map(str, FACE_VALUES_YUAN))
_ORDER_ID_LENGTHS: Final = range(8, 33)


class JuheFront:
    """juhe as one supplier with these credentials serves it; throttling is its own 10012, not HTTP 429."""

    protocol: ClassVar[str] = "juhe"
    routes: ClassVar[tuple[tuple[str, str], ...]] = (
        ("GET", SUBMIT_PATH),
        ("GET", QUERY_PATH),
        ("GET", BALANCE_PATH),
    )
    credential_keys: ClassVar[tuple[str, ...]] = ("key", "openid")
    supports_partial: ClassVar[bool] = False
    carries_notify_url: ClassVar[bool] = False

    __slots__ = ("_key", "_openid")

    def __init__(self, credentials: Mapping[str, str]) -> None:
        require_credentials(self.protocol, self.credential_keys, credentials)
        self._key = credentials["key"]
        self._openid = credentials["openid"]

    def read(self, request: Incoming) -> Reading:
        operation = _OPERATIONS.get(request.path, Operation.OTHER)
        try:
            pairs = parse_qsl(request.query_string, keep_blank_values=True, errors="strict")
        except ValueError:  # UnicodeDecodeError included: juhe speaks UTF-8 only
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation)
        params = dict(pairs)
        orderid = params.get("orderid", "")
        ids = (orderid,) if orderid else ()
        if len(params) != len(pairs) or operation is Operation.OTHER:
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation, upstream_order_ids=ids)
        if not hmac.compare_digest(params.get("key", "").encode(), self._key.encode()):
            return Rejection(refusal=Refusal.UNKNOWN_CREDENTIAL, operation=operation, upstream_order_ids=ids)
        if operation is Operation.BALANCE:
            return self._read_balance(params)
        phoneno, cardnum = params.get("phoneno", ""), params.get("cardnum", "")
        if operation is Operation.SUBMIT:
            expected = submit_sign(self._openid, self._key, phoneno, cardnum, orderid)
            if not hmac.compare_digest(expected.encode(), params.get("sign", "").lower().encode()):
                return Rejection(refusal=Refusal.BAD_SIGNATURE, operation=operation, upstream_order_ids=ids)
        # juhe's orderid: 8 to 32 ASCII letters and digits.
        if len(orderid) not in _ORDER_ID_LENGTHS or not (orderid.isascii() and orderid.isalnum()):
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation, upstream_order_ids=ids)
        if operation is Operation.QUERY:
            return QueryRequest(upstream_order_ids=(orderid,))
        if not (phoneno.isascii() and phoneno.isdigit()):
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=operation, upstream_order_ids=ids)
        if cardnum not in _YUAN:
            return Rejection(refusal=Refusal.UNKNOWN_PRODUCT, operation=operation, upstream_order_ids=ids)
        return SubmitRequest(
            upstream_order_id=orderid, account=phoneno, sku=None, face_value_cents=int(cardnum) * 100
        )

    def supplier_order_id(self, sequence: int) -> str:
        return f"J{sequence:016d}"

    def balance_reply(self, balance_cents: int) -> HttpReply:
        return _reply(0, "查询成功", {"money": yuan_text(balance_cents)})

    def _read_balance(self, params: Mapping[str, str]) -> Reading:
        timestamp = params.get("timestamp", "")
        if not (timestamp.isascii() and timestamp.isdigit()):
            return Rejection(refusal=Refusal.BAD_REQUEST, operation=Operation.BALANCE)
        expected = balance_sign(self._openid, self._key, timestamp)
        if not hmac.compare_digest(expected.encode(), params.get("sign", "").lower().encode()):
            return Rejection(refusal=Refusal.BAD_SIGNATURE, operation=Operation.BALANCE)
        return BalanceRequest()

    def submit_reply(self, entry: LedgerEntry) -> HttpReply:
        yuan = (entry.face_value_cents or 0) // 100
        result: dict[str, object] = {
            "cardid": str(1_900_200 + yuan),
            "cardnum": str(entry.quantity),
            # A JSON number, as juhe sends it; cents / 100 prints as the shortest exact decimal.
            "ordercash": (entry.cost_cents or 0) / 100,
            "cardname": f"手机话费{yuan}元直充",
            "sporder_id": entry.supplier_order_id,
            "uorderid": entry.upstream_order_id,
            "game_userid": entry.account,
            "game_state": _STATES[entry.state],
        }
        return _reply(0, "订单提交成功，等待充值", result)

    def query_reply(self, query: QueryRequest, found: Mapping[str, LedgerEntry]) -> HttpReply:
        entry = found.get(query.upstream_order_ids[0])
        if entry is None:
            return _reply(*_NOT_FOUND)
        result = {
            "uordercash": yuan_text(entry.cost_cents or 0),
            "sporder_id": entry.supplier_order_id,
            "game_state": _STATES[entry.state],
        }
        return _reply(0, "查询成功", result)

    def rejection_reply(self, rejection: Rejection) -> HttpReply:
        if rejection.refusal is Refusal.BAD_REQUEST:
            return _reply(*(_BAD_SUBMIT if rejection.operation is Operation.SUBMIT else _BAD_REQUEST))
        return _reply(*_REFUSALS[rejection.refusal])

    def callback(self, entry: LedgerEntry, url: str) -> HttpRequest:
        delivered = entry.state in {ChargeState.SUCCEEDED, ChargeState.PARTIAL}
        fields = {
            "sporder_id": entry.supplier_order_id,
            "orderid": entry.upstream_order_id,
            "sta": "1" if delivered else "9",
            "err_msg": "" if delivered else "充值失败",
            "sign": callback_sign(self._key, entry.supplier_order_id, entry.upstream_order_id),
        }
        return HttpRequest(
            method="POST", url=url, headers={"Content-Type": _FORM}, body=urlencode(fields).encode()
        )

    def forged_callbacks(self, entry: LedgerEntry, url: str) -> tuple[HttpRequest, ...]:
        """A wrongly signed report of the opposite result and, for a delivery, a validly signed
        failure: juhe's sign covers the ids only, so `sta` flipped under the real sign verifies."""
        lie = entry.opposite()
        impostor = JuheFront({"key": guessed(self._key), "openid": self._openid})
        forged = [impostor.callback(lie, url)]
        if lie.state is ChargeState.FAILED:
            forged.append(self.callback(lie, url))
        return tuple(forged)

    def acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"success"


def _reply(error_code: int, reason: str, result: Mapping[str, object] | None = None) -> HttpReply:
    # Compact UTF-8 with keys in juhe.md's order; an error's result is null.
    return reply(200, _JSON, orjson.dumps({"reason": reason, "error_code": error_code, "result": result}))
