"""Every test vector of protocols/*.md, reproduced byte for byte by the simulator's own code.

The supplier side signs, verifies and encodes without `adapters` (tests/adapters reproduces the same
vectors on the gateway side): two implementations agreeing with the protocol files is what makes a
bug shared by both sides visible. The values below are copied from the protocol files, never computed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode

import pytest

from gateway.simulator import ChargeState, LedgerEntry, Operation
from gateway.simulator.chinatime import china_time
from gateway.simulator.dayuanren import DayuanrenFront
from gateway.simulator.front import Incoming, Refusal, Rejection, SubmitRequest
from gateway.simulator.fulu import TIME_PATTERN as FULU_TIME
from gateway.simulator.fulu import FuluFront
from gateway.simulator.juhe import JuheFront
from gateway.simulator.ofpay import TIME_PATTERN as OFPAY_TIME
from gateway.simulator.ofpay import OfpayFront
from gateway.simulator.signatures import dayuanren, fulu, juhe, ofpay

ORDER_ID: Final = "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01"
PHONE: Final = "13800138000"
VECTOR_TIME: Final = 1_795_312_800  # 2026-11-22 10:00:00 in China; juhe's balance `timestamp`


def incoming(method: str, path: str, *, query_string: str = "", body: bytes = b"") -> Incoming:
    return Incoming(method=method, path=path, query_string=query_string, headers={}, body=body)


def delivered(upstream_order_id: str, supplier_order_id: str, sku: str | None = None) -> LedgerEntry:
    """A 50-yuan top-up of `PHONE` that succeeded 7 s after the vectors' time, as a front reports it."""
    return LedgerEntry(
        upstream_order_id=upstream_order_id,
        account=PHONE,
        sku=sku,
        face_value_cents=5000,
        quantity=1,
        cost_cents=4930,
        supplier_order_id=supplier_order_id,
        charged=True,
        state=ChargeState.SUCCEEDED,
        accepted_at=0.0,
        finished_at=VECTOR_TIME + 7.0,
    )


def test_china_time_of_the_vectors() -> None:
    assert china_time(VECTOR_TIME, FULU_TIME) == "2026-11-22 10:00:00"
    assert china_time(VECTOR_TIME + 0.999, OFPAY_TIME) == "20261122100000"  # fractions dropped
    assert china_time(VECTOR_TIME + 14 * 3600, FULU_TIME) == "2026-11-23 00:00:00"


# fulu.md

FULU_SECRET: Final = "demo-app-secret"
FULU_BIZ: Final = (
    '{"charge_phone":"13800138000","charge_value":50,"customer_order_no":"G01J8Z3Q7K2M4N6P8R0T2V4X6Z01"}'
)
FULU_SIGN: Final = "bb92097082085d74ab291205bb5d1456"
FULU_BALANCE_SIGN: Final = "ace660b220d86014579b14893011fb5b"
FULU_BALANCE_RESULT: Final = '{"balance":"12345.67","user_name":"demo"}'
FULU_BALANCE_RESULT_SIGN: Final = "2d17b7936bcbd7bf8bf0c320be034843"


def fulu_params(method: str, biz_content: str) -> dict[str, str]:
    return {
        "app_key": "demo-app-key",
        "method": method,
        "timestamp": "2026-11-22 10:00:00",
        "version": "2.0",
        "format": "json",
        "charset": "utf-8",
        "sign_type": "md5",
        "app_auth_token": "",
        "biz_content": biz_content,
    }


def test_fulu_vector_biz_content_is_the_compact_json_of_the_order() -> None:
    biz = {"charge_phone": PHONE, "charge_value": 50, "customer_order_no": ORDER_ID}
    assert fulu.compact_json(biz) == FULU_BIZ


def test_fulu_vector_submit_sign() -> None:
    params = fulu_params("fulu.order.mobile.add", FULU_BIZ)
    assert fulu.sign_params(params, FULU_SECRET) == FULU_SIGN
    # `sign` itself is left out, and key order does not matter: the characters are sorted.
    assert fulu.sign_params({"sign": "anything", **params}, FULU_SECRET) == FULU_SIGN
    assert fulu.sign_params(dict(reversed(params.items())), FULU_SECRET) == FULU_SIGN


def test_fulu_vector_balance_request_sign() -> None:
    assert fulu.sign_params(fulu_params("fulu.user.info.get", "{}"), FULU_SECRET) == FULU_BALANCE_SIGN


def test_fulu_vector_balance_reply_result_and_sign() -> None:
    result = fulu.compact_json({"balance": "12345.67", "user_name": "demo"})
    assert result == FULU_BALANCE_RESULT
    assert fulu.sign_text(result, FULU_SECRET) == FULU_BALANCE_RESULT_SIGN


def test_fulu_signing_leaves_slash_and_non_ascii_unescaped() -> None:
    assert fulu.compact_json({"d": "充值/成功", "n": None}) == '{"d":"充值/成功","n":null}'
    with pytest.raises(ValueError, match="JSON"):
        fulu.compact_json({"n": float("nan")})


def test_fulu_front_accepts_the_vector_request_however_it_is_spaced() -> None:
    # Written with spaces and \u escapes: the supplier re-serializes what it parsed to verify.
    body = json.dumps(fulu_params("fulu.order.mobile.add", FULU_BIZ) | {"sign": FULU_SIGN}).encode()

    reading = FuluFront({"app_key": "demo-app-key", "app_secret": FULU_SECRET}).read(
        incoming("POST", "/api/getway", body=body)
    )

    assert reading == SubmitRequest(
        upstream_order_id=ORDER_ID, account=PHONE, sku=None, face_value_cents=5000
    )


def test_fulu_front_refuses_the_vector_signature_over_other_fields_with_1001() -> None:
    tampered = fulu_params("fulu.order.mobile.add", FULU_BIZ.replace(":50,", ":500,"))
    body = json.dumps(tampered | {"sign": FULU_SIGN}).encode()
    front = FuluFront({"app_key": "demo-app-key", "app_secret": FULU_SECRET})

    reading = front.read(incoming("POST", "/api/getway", body=body))

    assert reading == Rejection(refusal=Refusal.BAD_SIGNATURE, operation=Operation.SUBMIT)
    answer = json.loads(front.rejection_reply(reading).body)
    assert (answer["code"], answer["result"]) == (1001, "")
    assert answer["sign"] == fulu.sign_text("", FULU_SECRET)


def test_fulu_callback_is_signed_over_its_other_fields_as_requests_are() -> None:
    front = FuluFront({"app_key": "demo-app-key", "app_secret": FULU_SECRET})
    entry = delivered(ORDER_ID, "F2026112210000001", sku="18221081")

    callback = front.callback(entry, "http://127.0.0.1:8080/callbacks/fulu")

    fields = json.loads(callback.body)
    # The shape of fulu.md's example callback, every value a JSON string.
    assert fields == {
        "order_id": "F2026112210000001",
        "charge_finish_time": "2026-11-22 10:00:07",
        "customer_order_no": ORDER_ID,
        "order_status": "success",
        "recharge_description": "充值成功",
        "product_id": "18221081",
        "price": "49.30",
        "buy_num": "1",
        "operator_serial_number": "OP2026112210000001",
        "sign": fulu.sign_params(fields, FULU_SECRET),
    }
    assert callback.body == fulu.compact_json(fields).encode()


# ofpay.md

OFPAY_USERPWS: Final = "4b4d9529148d8d9440d7e20c78287f69"
OFPAY_MD5_STR: Final = "74DC02BEA85012B4DA5D27445417E589"
OFPAY_CALLBACK_SIGN: Final = "4961AEB185A378DF5B9E9FC2A8169F60"
OFPAY_BALANCE_MD5_STR: Final = "9280E9D9CD9C3A332F4751CB3331ECF5"
OFPAY_CREDENTIALS: Final[Mapping[str, str]] = {
    "userid": "A1234567",
    "password": "demo-password",
    "keystr": "OFCARD",
}
OFPAY_SUBMIT: Final[Mapping[str, str]] = {
    "userid": "A1234567",
    "userpws": OFPAY_USERPWS,
    "cardid": "140101",
    "cardnum": "50",
    "sporder_id": ORDER_ID,
    "sporder_time": "20261122100000",
    "game_userid": PHONE,
}


def test_ofpay_vector_userpws() -> None:
    assert ofpay.userpws("demo-password") == OFPAY_USERPWS


def test_ofpay_vector_submit_md5_str() -> None:
    assert ofpay.submit_sign(OFPAY_SUBMIT, "OFCARD") == OFPAY_MD5_STR


def test_ofpay_vector_callback_sign() -> None:
    assert ofpay.callback_sign("A1234567", "1", ORDER_ID, "OFCARD") == OFPAY_CALLBACK_SIGN


def test_ofpay_vector_balance_md5_str() -> None:
    assert ofpay.balance_sign("A1234567", OFPAY_USERPWS, "OFCARD") == OFPAY_BALANCE_MD5_STR


def test_ofpay_front_accepts_the_vector_request() -> None:
    fields = {
        **OFPAY_SUBMIT,
        "md5_str": OFPAY_MD5_STR,
        "ret_url": "http://127.0.0.1:8080/callbacks/ofpay",
        "version": "6.0",
    }

    reading = OfpayFront(OFPAY_CREDENTIALS).read(
        incoming("GET", "/onlineorder.do", query_string=urlencode(fields, encoding="gbk"))
    )

    assert reading == SubmitRequest(
        upstream_order_id=ORDER_ID,
        account=PHONE,
        sku="140101",
        face_value_cents=5000,
        notify_url="http://127.0.0.1:8080/callbacks/ofpay",
    )


def test_ofpay_front_refuses_the_vector_signature_over_other_fields_with_1002() -> None:
    fields = {**OFPAY_SUBMIT, "cardnum": "100", "md5_str": OFPAY_MD5_STR, "version": "6.0"}
    front = OfpayFront(OFPAY_CREDENTIALS)

    reading = front.read(incoming("GET", "/onlineorder.do", query_string=urlencode(fields)))

    assert reading == Rejection(
        refusal=Refusal.BAD_SIGNATURE, operation=Operation.SUBMIT, upstream_order_ids=(ORDER_ID,)
    )
    assert front.rejection_reply(reading).body == (
        '<?xml version="1.0" encoding="GB2312"?>\n<orderinfo><err_msg>MD5验证错误</err_msg>'
        f"<retcode>1002</retcode><sporder_id>{ORDER_ID}</sporder_id></orderinfo>"
    ).encode("gb2312")


def test_ofpay_callback_of_the_vector_order_byte_for_byte() -> None:
    callback = OfpayFront(OFPAY_CREDENTIALS).callback(
        delivered(ORDER_ID, "S2026112210000001", sku="140101"), "http://127.0.0.1:8080/callbacks/ofpay"
    )

    assert callback.headers == {"Content-Type": "application/x-www-form-urlencoded; charset=GBK"}
    # err_msg is 充值成功 percent-encoded from its GBK bytes.
    assert callback.body == (
        f"ret_code=1&sporder_id={ORDER_ID}&ordersuccesstime=20261122100007"
        f"&err_msg=%B3%E4%D6%B5%B3%C9%B9%A6&sign={OFPAY_CALLBACK_SIGN}"
    ).encode("ascii")


# juhe.md

JUHE_CREDENTIALS: Final[Mapping[str, str]] = {"key": "demo-key", "openid": "demo-openid"}
JUHE_SIGN: Final = "44985caf130ad394835f7d672bcf0c2b"
JUHE_CALLBACK_SIGN: Final = "339f2eb8ed851587ae54a4d753852ef3"
JUHE_BALANCE_SIGN: Final = "f44824539123862363319917b41f4a29"


def test_juhe_vector_submit_sign() -> None:
    assert juhe.submit_sign("demo-openid", "demo-key", PHONE, "50", ORDER_ID) == JUHE_SIGN


def test_juhe_vector_callback_sign() -> None:
    assert juhe.callback_sign("demo-key", "J2026112210000001", ORDER_ID) == JUHE_CALLBACK_SIGN


def test_juhe_vector_balance_sign() -> None:
    assert juhe.balance_sign("demo-openid", "demo-key", str(VECTOR_TIME)) == JUHE_BALANCE_SIGN


def test_juhe_front_accepts_the_vector_request() -> None:
    query = urlencode(
        {"phoneno": PHONE, "cardnum": "50", "orderid": ORDER_ID, "key": "demo-key", "sign": JUHE_SIGN}
    )

    reading = JuheFront(JUHE_CREDENTIALS).read(
        incoming("GET", "/ofpay/mobile/onlineorder", query_string=query)
    )

    assert reading == SubmitRequest(
        upstream_order_id=ORDER_ID, account=PHONE, sku=None, face_value_cents=5000
    )


def test_juhe_front_refuses_the_vector_signature_over_other_fields_with_10001() -> None:
    query = urlencode(
        {"phoneno": PHONE, "cardnum": "100", "orderid": ORDER_ID, "key": "demo-key", "sign": JUHE_SIGN}
    )
    front = JuheFront(JUHE_CREDENTIALS)

    reading = front.read(incoming("GET", "/ofpay/mobile/onlineorder", query_string=query))

    assert reading == Rejection(
        refusal=Refusal.BAD_SIGNATURE, operation=Operation.SUBMIT, upstream_order_ids=(ORDER_ID,)
    )
    assert json.loads(front.rejection_reply(reading).body)["error_code"] == 10001


def test_juhe_callback_of_the_vector_order_byte_for_byte() -> None:
    callback = JuheFront(JUHE_CREDENTIALS).callback(
        delivered(ORDER_ID, "J2026112210000001"), "http://127.0.0.1:8080/callbacks/juhe"
    )

    assert callback.body == (
        f"sporder_id=J2026112210000001&orderid={ORDER_ID}&sta=1&err_msg=&sign={JUHE_CALLBACK_SIGN}"
    ).encode("ascii")


# dayuanren.md

DAYUANREN_CREDENTIALS: Final[Mapping[str, str]] = {"userid": "10001", "apikey": "demo-apikey"}
DAYUANREN_SUBMIT: Final[Mapping[str, str]] = {
    "userid": "10001",
    "out_trade_num": ORDER_ID,
    "product_id": "101",
    "mobile": PHONE,
    "notify_url": "http://127.0.0.1:8080/callbacks/dyr",
    "amount": "50",
}
DAYUANREN_SIGNED: Final = (
    "amount=50&mobile=13800138000&notify_url=http://127.0.0.1:8080/callbacks/dyr"
    "&out_trade_num=G01J8Z3Q7K2M4N6P8R0T2V4X6Z01&product_id=101&userid=10001&apikey=demo-apikey"
)
DAYUANREN_SIGN: Final = "ABDE5510C9905654AE77E3FCD0B5E821"
DAYUANREN_BALANCE_SIGNED: Final = "userid=10001&apikey=demo-apikey"
DAYUANREN_BALANCE_SIGN: Final = "EE2C8EDCC0F3FE4C4821F7DCAA6563AB"


def test_dayuanren_vector_submit_signed_text_and_sign() -> None:
    assert dayuanren.signed_text(DAYUANREN_SUBMIT, "demo-apikey") == DAYUANREN_SIGNED
    assert dayuanren.sign(DAYUANREN_SUBMIT, "demo-apikey") == DAYUANREN_SIGN
    assert dayuanren.sign({**DAYUANREN_SUBMIT, "sign": "anything"}, "demo-apikey") == DAYUANREN_SIGN


def test_dayuanren_vector_balance_signed_text_and_sign() -> None:
    assert dayuanren.signed_text({"userid": "10001"}, "demo-apikey") == DAYUANREN_BALANCE_SIGNED
    assert dayuanren.sign({"userid": "10001"}, "demo-apikey") == DAYUANREN_BALANCE_SIGN


def test_dayuanren_front_accepts_the_vector_request_signed_over_decoded_values() -> None:
    # On the wire notify_url is percent-encoded; the signature covers its plain value.
    body = urlencode({**DAYUANREN_SUBMIT, "sign": DAYUANREN_SIGN}).encode()
    assert b"notify_url=http%3A%2F%2F127.0.0.1" in body

    reading = DayuanrenFront(DAYUANREN_CREDENTIALS).read(
        incoming("POST", "/yrapi.php/index/recharge", body=body)
    )

    assert reading == SubmitRequest(
        upstream_order_id=ORDER_ID,
        account=PHONE,
        sku="101",
        face_value_cents=5000,
        notify_url="http://127.0.0.1:8080/callbacks/dyr",
    )


def test_dayuanren_front_refuses_the_vector_signature_over_other_fields_with_1001() -> None:
    body = urlencode({**DAYUANREN_SUBMIT, "amount": "100", "sign": DAYUANREN_SIGN}).encode()
    front = DayuanrenFront(DAYUANREN_CREDENTIALS)

    reading = front.read(incoming("POST", "/yrapi.php/index/recharge", body=body))

    assert reading == Rejection(refusal=Refusal.BAD_SIGNATURE, operation=Operation.SUBMIT)
    assert json.loads(front.rejection_reply(reading).body)["errno"] == 1001


def test_dayuanren_callback_is_signed_over_every_field_it_sends() -> None:
    callback = DayuanrenFront(DAYUANREN_CREDENTIALS).callback(
        delivered(ORDER_ID, "Y2026112210000001", sku="101"), "http://127.0.0.1:8080/callbacks/dyr"
    )

    fields = dict(parse_qsl(callback.body.decode("ascii"), keep_blank_values=True, strict_parsing=True))
    assert fields["sign"] == dayuanren.sign(fields, "demo-apikey")
    assert (fields["state"], fields["charge_amount"], fields["otime"]) == ("1", "50.00", str(VECTOR_TIME + 7))
