"""Every adapter's balance call against protocols/*.md: the test vectors byte for byte, then the readings.

The values below are copied from the protocol files, never computed; a reply the adapter cannot
read leaves the balance unknown and never raises.
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import pytest

from adapters import fulu
from adapters.interface import AdapterSettings, BalanceReply, HttpReply, SupplierAdapter
from adapters.registry import ADAPTERS

VECTOR_TIME: Final = 1_795_312_800.0  # 2026-11-22 10:00:00 in China
CREDENTIALS: Final = {
    "fulu": {"app_key": "demo-app-key", "app_secret": "demo-app-secret"},
    "ofpay": {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
    "juhe": {"key": "demo-key", "openid": "demo-openid"},
    "dayuanren": {"userid": "10001", "apikey": "demo-apikey"},
}
BASE_URL: Final = "http://127.0.0.1:9101"
BALANCE_CENTS: Final = 1_234_567

FULU_BALANCE_SIGN: Final = "ace660b220d86014579b14893011fb5b"
FULU_RESULT: Final = '{"balance":"12345.67","user_name":"demo"}'
FULU_RESULT_SIGN: Final = "2d17b7936bcbd7bf8bf0c320be034843"
OFPAY_USERPWS: Final = "4b4d9529148d8d9440d7e20c78287f69"
OFPAY_BALANCE_MD5_STR: Final = "9280E9D9CD9C3A332F4751CB3331ECF5"
JUHE_BALANCE_SIGN: Final = "f44824539123862363319917b41f4a29"
DAYUANREN_BALANCE_SIGN: Final = "EE2C8EDCC0F3FE4C4821F7DCAA6563AB"

GOOD_REPLIES: Final = {
    "fulu": json.dumps(
        {"code": 0, "message": "成功", "result": FULU_RESULT, "sign": FULU_RESULT_SIGN}, ensure_ascii=False
    ).encode(),
    "ofpay": (
        '<?xml version="1.0" encoding="GB2312"?>\n<userinfo><err_msg></err_msg><retcode>1</retcode>'
        "<userid>A1234567</userid><ret_leftcredit>12345.67</ret_leftcredit></userinfo>"
    ).encode("gb2312"),
    "juhe": '{"reason":"查询成功","error_code":0,"result":{"money":"12345.67"}}'.encode(),
    "dayuanren": b'{"errno":0,"errmsg":"ok","data":{"id":10001,"username":"demo","balance":"12345.67"}}',
}
REFUSED_REPLIES: Final = {
    "fulu": ('{"code":1001,"message":"签名错误","result":"","sign":""}'.encode(), "1001"),
    "ofpay": (
        '<?xml version="1.0" encoding="GB2312"?>\n<userinfo><err_msg>MD5验证错误</err_msg>'
        "<retcode>1002</retcode></userinfo>".encode("gb2312"),
        "1002",
    ),
    "juhe": ('{"reason":"错误的请求KEY","error_code":10001,"result":null}'.encode(), "10001"),
    "dayuanren": ('{"errno":1001,"errmsg":"签名错误","data":null}'.encode(), "1001"),
}
GARBAGE: Final = (
    b"",
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"code":0',
    b"\xff\xfe\x00",
    b"[]",
    b"null",
    b'{"code":0,"result":"{}","sign":"x"}',
    b'{"error_code":0,"result":{"money":"-5"}}',
    b'{"error_code":0,"result":{"money":"1e5"}}',
    b'{"errno":0,"data":{"balance":true}}',
    b'{"errno":0,"data":[]}',
    b"<userinfo><retcode>1</retcode><ret_leftcredit>12,345.67</ret_leftcredit></userinfo>",
    b'<!DOCTYPE x [<!ENTITY a "1">]><userinfo><retcode>1</retcode>'
    b"<ret_leftcredit>&a;</ret_leftcredit></userinfo>",
)


def adapter(protocol: str, base_url: str = BASE_URL) -> SupplierAdapter:
    return ADAPTERS[protocol](
        AdapterSettings(name=protocol, base_url=base_url, credentials=CREDENTIALS[protocol])
    )


def ok(body: bytes) -> HttpReply:
    return HttpReply(status=200, headers={}, body=body)


# The test vectors


def test_fulu_vector_balance_request_byte_for_byte() -> None:
    request = adapter("fulu").build_balance(VECTOR_TIME)
    assert (request.method, request.url) == ("POST", BASE_URL + "/api/getway")
    params = json.loads(request.body)
    assert params["method"] == "fulu.user.info.get"
    assert params["biz_content"] == "{}"
    assert params["timestamp"] == "2026-11-22 10:00:00"
    assert params["sign"] == FULU_BALANCE_SIGN
    assert request.body.decode() == fulu.compact_json(params)


def test_fulu_vector_balance_reply_sign_is_verified() -> None:
    assert fulu.sign_text(FULU_RESULT, "demo-app-secret") == FULU_RESULT_SIGN
    assert adapter("fulu").parse_balance(ok(GOOD_REPLIES["fulu"])) == BalanceReply(
        balance_cents=BALANCE_CENTS, code="0"
    )


def test_fulu_balance_reply_with_a_wrong_sign_is_unknown() -> None:
    forged = GOOD_REPLIES["fulu"].replace(FULU_RESULT_SIGN.encode(), b"0" * 32)
    reply = adapter("fulu").parse_balance(ok(forged))
    assert reply.balance_cents is None
    assert reply.message is not None
    assert "signature" in reply.message


def test_ofpay_vector_balance_request_byte_for_byte() -> None:
    request = adapter("ofpay").build_balance(VECTOR_TIME)
    assert request.method == "GET"
    assert request.url == (
        f"{BASE_URL}/newqueryuserinfo.do?userid=A1234567&userpws={OFPAY_USERPWS}"
        f"&version=6.0&md5_str={OFPAY_BALANCE_MD5_STR}"
    )
    assert request.body == b""


def test_juhe_vector_balance_request_byte_for_byte() -> None:
    request = adapter("juhe").build_balance(VECTOR_TIME)
    assert request.method == "GET"
    assert request.url == (
        f"{BASE_URL}/ofpay/mobile/yue?timestamp=1795312800&key=demo-key&sign={JUHE_BALANCE_SIGN}"
    )


def test_juhe_balance_timestamp_drops_fractions() -> None:
    request = adapter("juhe").build_balance(VECTOR_TIME + 0.999)
    assert dict(parse_qsl(urlsplit(request.url).query))["sign"] == JUHE_BALANCE_SIGN


def test_dayuanren_vector_balance_request_byte_for_byte() -> None:
    request = adapter("dayuanren").build_balance(VECTOR_TIME)
    assert (request.method, request.url) == ("POST", BASE_URL + "/yrapi.php/index/user")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.body == f"userid=10001&sign={DAYUANREN_BALANCE_SIGN}".encode()


# Readings, every protocol


@pytest.mark.parametrize("protocol", sorted(ADAPTERS))
def test_the_documented_reply_reads_as_the_balance(protocol: str) -> None:
    reply = adapter(protocol).parse_balance(ok(GOOD_REPLIES[protocol]))
    assert (reply.balance_cents, reply.known, reply.message) == (BALANCE_CENTS, True, None)


@pytest.mark.parametrize(
    ("protocol", "body"),
    [
        ("juhe", b'{"reason":"ok","error_code":0,"result":{"money":12345.67}}'),
        ("dayuanren", b'{"errno":0,"errmsg":"ok","data":{"balance":12345.67}}'),
        ("dayuanren", b'{"errno":"0","errmsg":"ok","data":{"balance":"12345.6700"}}'),
    ],
)
def test_a_balance_may_come_as_a_number_or_padded(protocol: str, body: bytes) -> None:
    assert adapter(protocol).parse_balance(ok(body)).balance_cents == BALANCE_CENTS


@pytest.mark.parametrize("protocol", sorted(ADAPTERS))
def test_a_refused_balance_call_is_unknown_with_its_code(protocol: str) -> None:
    body, code = REFUSED_REPLIES[protocol]
    reply = adapter(protocol).parse_balance(ok(body))
    assert (reply.balance_cents, reply.code, reply.known) == (None, code, False)
    assert reply.message


@pytest.mark.parametrize("status", [404, 429, 500, 503])
@pytest.mark.parametrize("protocol", sorted(ADAPTERS))
def test_a_non_200_status_is_unknown_even_with_a_good_body(protocol: str, status: int) -> None:
    reply = adapter(protocol).parse_balance(HttpReply(status=status, headers={}, body=GOOD_REPLIES[protocol]))
    assert reply.balance_cents is None
    assert reply.message is not None
    assert f"HTTP {status}" in reply.message


@pytest.mark.parametrize("body", GARBAGE)
@pytest.mark.parametrize("protocol", sorted(ADAPTERS))
def test_garbage_leaves_the_balance_unknown_and_never_raises(protocol: str, body: bytes) -> None:
    reply = adapter(protocol).parse_balance(ok(body))
    assert reply.balance_cents is None
    assert reply.message


@pytest.mark.parametrize("protocol", sorted(ADAPTERS))
def test_another_protocols_balance_reply_is_unknown(protocol: str) -> None:
    for other, body in GOOD_REPLIES.items():
        if other != protocol:
            assert adapter(protocol).parse_balance(ok(body)).balance_cents is None, other
