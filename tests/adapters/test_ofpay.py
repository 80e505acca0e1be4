"""OfpayAdapter against ofpay.md: the test vector byte for byte, and every fixture reply and callback."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit
from xml.parsers import expat

import pytest

from adapters import ofpay
from adapters.interface import (
    AccountKind,
    AdapterSettings,
    BadSignature,
    Charge,
    HttpReply,
    HttpResponse,
    InboundCallback,
    InvalidSettings,
    Verdict,
)
from adapters.ofpay import OfpayAdapter, callback_sign, china_time, read_form, sign, userpws
from tests.adapters.cases import Fixtures

# cases.toml states every message: one it leaves out must be None.
FIXTURES = Fixtures("ofpay", exact_messages=True)
ORDER_ID = FIXTURES.order_id
CREDENTIALS = {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"}
CALLBACK_URL = "http://127.0.0.1:8080/callbacks/ofpay"
VECTOR_TIME = 1_795_312_800.0  # 2026-11-22 10:00:00 in China
VECTOR_USERPWS = "4b4d9529148d8d9440d7e20c78287f69"
VECTOR_MD5_STR = "74DC02BEA85012B4DA5D27445417E589"
VECTOR_CALLBACK_SIGN = "4961AEB185A378DF5B9E9FC2A8169F60"
VECTOR_URL = (
    "http://127.0.0.1:9102/onlineorder.do?userid=A1234567&userpws=4b4d9529148d8d9440d7e20c78287f69"
    "&cardid=140101&cardnum=50&sporder_id=G01J8Z3Q7K2M4N6P8R0T2V4X6Z01&sporder_time=20261122100000"
    "&game_userid=13800138000&md5_str=74DC02BEA85012B4DA5D27445417E589"
    "&ret_url=http%3A%2F%2F127.0.0.1%3A8080%2Fcallbacks%2Fofpay&version=6.0"
)


def adapter(codes: Mapping[str, Verdict] | None = None, **credentials: str) -> OfpayAdapter:
    return OfpayAdapter(
        AdapterSettings(
            name="ofpay",
            base_url="http://127.0.0.1:9102/",
            credentials=CREDENTIALS | credentials,
            codes=codes or {},
        )
    )


def charge(**changes: Any) -> Charge:
    fields: dict[str, Any] = {
        "upstream_order_id": ORDER_ID,
        "sku": "140101",
        "account": "13800138000",
        "account_kind": AccountKind.MOBILE_CN,
        "face_value_cents": 5000,
        "quantity": 1,
        "max_cost_cents": 4950,
        "callback_url": CALLBACK_URL,
        "timestamp": VECTOR_TIME,
    }
    return Charge(**(fields | changes))


def query_fields(url: str) -> list[tuple[str, bytes]]:
    """The query of `url` as (name, raw value bytes) pairs, in order: what went on the wire."""
    pairs = [pair.split("=", 1) for pair in urlsplit(url).query.split("&")]
    return [(name, unquote_to_bytes(value.replace("+", " "))) for name, value in pairs]


# The test vector (ofpay.md)


def test_vector_userpws() -> None:
    assert userpws("demo-password") == VECTOR_USERPWS


def test_vector_md5_str() -> None:
    parts = ("A1234567", VECTOR_USERPWS, "140101", "50", ORDER_ID, "20261122100000", "13800138000", "OFCARD")
    assert sign(*parts) == VECTOR_MD5_STR


def test_vector_callback_sign() -> None:
    assert callback_sign("A1234567", "1", ORDER_ID, "OFCARD") == VECTOR_CALLBACK_SIGN


def test_vector_submit_reproduces_the_url_byte_for_byte() -> None:
    request = adapter().build_submit(charge())
    assert request.method == "GET"
    assert request.url == VECTOR_URL
    assert request.body == b""
    assert dict(request.headers) == {}


def test_submit_fields_are_in_the_documented_order() -> None:
    names = [name for name, _ in query_fields(adapter().build_submit(charge()).url)]
    assert names == [*ofpay.SUBMIT_SIGNED, "md5_str", "ret_url", "version"]


def test_vector_callback_verifies() -> None:
    body = f"ret_code=1&sporder_id={ORDER_ID}&ordersuccesstime=20261122100007&sign={VECTOR_CALLBACK_SIGN}"
    callback = InboundCallback(
        method="POST", query={}, content_type="application/x-www-form-urlencoded", body=body.encode()
    )
    assert adapter().parse_callback(callback).verdict is Verdict.SUCCEEDED


# Building submits and queries


def test_timestamp_is_china_time_whatever_the_fraction() -> None:
    assert china_time(VECTOR_TIME + 0.999) == "20261122100000"
    assert china_time(VECTOR_TIME + 14 * 3600) == "20261123000000"
    fields = dict(query_fields(adapter().build_submit(charge(timestamp=VECTOR_TIME + 14 * 3600)).url))
    assert fields["sporder_time"] == b"20261123000000"


def test_mobile_cardnum_is_the_face_value_times_the_quantity() -> None:
    fields = dict(query_fields(adapter().build_submit(charge(quantity=2)).url))
    assert fields["cardnum"] == b"100"
    assert fields["md5_str"].decode() == sign(*(fields[k].decode() for k in ofpay.SUBMIT_SIGNED), "OFCARD")


def test_mobile_face_value_must_be_whole_yuan() -> None:
    with pytest.raises(ValueError, match="whole yuan"):
        adapter().build_submit(charge(face_value_cents=4950))


@pytest.mark.parametrize("kind", [AccountKind.QQ, AccountKind.GAME, AccountKind.ANY])
def test_other_account_kinds_send_the_quantity(kind: AccountKind) -> None:
    request = adapter().build_submit(charge(account_kind=kind, sku="220612", account="123456789", quantity=3))
    fields = dict(query_fields(request.url))
    assert (fields["cardid"], fields["cardnum"], fields["game_userid"]) == (b"220612", b"3", b"123456789")
    assert fields["md5_str"].decode() == sign(*(fields[k].decode() for k in ofpay.SUBMIT_SIGNED), "OFCARD")


def test_chinese_account_is_percent_encoded_and_signed_as_gbk() -> None:
    request = adapter().build_submit(charge(account_kind=AccountKind.GAME, account="玩家 一号+1"))
    assert "&game_userid=%CD%E6%BC%D2+%D2%BB%BA%C5%2B1&" in request.url
    fields = dict(query_fields(request.url))
    assert fields["game_userid"] == "玩家 一号+1".encode("gbk")
    signed = b"".join(fields[k] for k in ofpay.SUBMIT_SIGNED) + b"OFCARD"
    assert fields["md5_str"].decode() == hashlib.md5(signed, usedforsecurity=False).hexdigest().upper()


def test_account_outside_gbk_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="GBK"):
        adapter().build_submit(charge(account_kind=AccountKind.GAME, account="player😀"))


def test_empty_sku_cannot_be_sent() -> None:
    with pytest.raises(ValueError, match="cardid"):
        adapter().build_submit(charge(sku=""))


def test_ret_url_is_each_charge_callback_url() -> None:
    one = adapter()
    for url in (CALLBACK_URL, "http://gw.example:8080/callbacks/ofpay?supplier=of1&x=a b", CALLBACK_URL):
        fields = dict(query_fields(one.build_submit(charge(callback_url=url)).url))
        assert fields["ret_url"] == url.encode()


def test_query_request() -> None:
    request = adapter().build_query([ORDER_ID], VECTOR_TIME)
    assert request.method == "GET"
    assert request.url == f"http://127.0.0.1:9102/api/query.do?userid=A1234567&spbillid={ORDER_ID}"
    assert request.body == b""


@pytest.mark.parametrize("ids", [[], [ORDER_ID, ORDER_ID + "2"]])
def test_query_takes_exactly_one_id(ids: list[str]) -> None:
    with pytest.raises(ValueError, match="one order at a time"):
        adapter().build_query(ids, VECTOR_TIME)
    with pytest.raises(ValueError, match="one order at a time"):
        adapter().parse_query(ids, FIXTURES.reply("query-success.http"))


def test_base_url_path_is_kept() -> None:
    other = OfpayAdapter(
        AdapterSettings(name="o", base_url="https://api.of.example/v6", credentials=CREDENTIALS)
    )
    assert other.build_submit(charge()).url.startswith("https://api.of.example/v6/onlineorder.do?userid=")
    assert other.build_query([ORDER_ID], 0.0).url.startswith("https://api.of.example/v6/api/query.do?")


# Settings


def test_settings_problems_are_all_listed() -> None:
    with pytest.raises(InvalidSettings) as raised:
        OfpayAdapter(
            AdapterSettings(name="ofpay", base_url="ftp://x", credentials={"userid": "", "keystr": "钥匙😀"})
        )
    assert raised.value.problems == (
        ("credentials.userid", "empty"),
        ("credentials.password", "missing"),
        ("credentials.keystr", "has characters GBK cannot encode"),
        ("base_url", "must be an http:// or https:// URL without query or fragment"),
    )


@pytest.mark.parametrize("base_url", ["", "127.0.0.1:9102", "http://", "http://h/?a=1", "http://h/#f"])
def test_bad_base_urls(base_url: str) -> None:
    with pytest.raises(InvalidSettings, match="base_url"):
        OfpayAdapter(AdapterSettings(name="ofpay", base_url=base_url, credentials=CREDENTIALS))


def test_class_contract() -> None:
    assert OfpayAdapter.protocol == "ofpay"
    assert OfpayAdapter.credential_keys == ("userid", "password", "keystr")
    assert OfpayAdapter.max_query_batch == 1


# Fixtures


def test_every_fixture_has_a_case_and_every_case_a_fixture() -> None:
    assert FIXTURES.listed() == FIXTURES.files()


@pytest.mark.parametrize("name", FIXTURES.names("submit"))
def test_submit_fixture(name: str) -> None:
    FIXTURES.check_submit(adapter(), name)


@pytest.mark.parametrize("name", FIXTURES.names("query"))
def test_query_fixture(name: str) -> None:
    FIXTURES.check_query(adapter(), name)


@pytest.mark.parametrize("name", FIXTURES.names("callback"))
def test_callback_fixture(name: str) -> None:
    FIXTURES.check_callback(adapter(), name)


def test_the_reply_fixtures_are_really_gb2312() -> None:
    _, headers, body = FIXTURES.load("submit-processing.http")
    assert headers["Content-Type"] == "text/xml; charset=GB2312"
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert "移动话费50元直充".encode("gb2312") in body
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")


def test_callback_with_another_key_does_not_verify() -> None:
    callback = FIXTURES.callback("callback-success.http")
    with pytest.raises(BadSignature):
        adapter(keystr="OTHER").parse_callback(callback)
    with pytest.raises(BadSignature):
        adapter(userid="B7654321").parse_callback(callback)


# Hostile XML


@pytest.mark.parametrize(
    "name", ["billion-laughs.http", "xxe-external-entity.http", "doctype-without-entities.http"]
)
def test_dtds_are_refused_before_any_parser_sees_them(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def parser(*args: object, **kwargs: object) -> object:
        raise AssertionError("a DTD reached the XML parser")

    monkeypatch.setattr(expat, "ParserCreate", parser)
    reply = adapter().parse_submit(ORDER_ID, FIXTURES.reply(name))
    assert reply.verdict is Verdict.UNKNOWN
    assert "DTD refused" in (reply.message or "")


def test_that_is_the_parser_a_reply_reaches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the test above: a patched `ParserCreate` is what a reply would reach."""

    def parser(*args: object, **kwargs: object) -> object:
        raise AssertionError("reached")

    monkeypatch.setattr(expat, "ParserCreate", parser)
    with pytest.raises(AssertionError, match="reached"):
        adapter().parse_submit(ORDER_ID, FIXTURES.reply("submit-processing.http"))


def test_billion_laughs_is_refused_without_expanding() -> None:
    bomb = FIXTURES.reply("billion-laughs.http")
    tracemalloc.start()
    try:
        assert adapter().parse_submit(ORDER_ID, bomb).verdict is Verdict.UNKNOWN
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Expanded, the entities would build gigabytes; refused, the parse allocates next to nothing.
    assert peak < 1024 * 1024


# Code table


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("1001", Verdict.NOT_EXECUTED),
        ("1002", Verdict.NOT_EXECUTED),
        ("1003", Verdict.NOT_EXECUTED),
        ("1005", Verdict.BALANCE_INSUFFICIENT),
        ("1007", Verdict.ACCOUNT_INVALID),
        ("1009", Verdict.UNKNOWN),
        ("9999", Verdict.UNKNOWN),
        ("1004", Verdict.UNKNOWN),
        ("0", Verdict.UNKNOWN),
        ("-1", Verdict.UNKNOWN),
        ("abc", Verdict.UNKNOWN),
    ],
)
def test_default_submit_codes(code: str, verdict: Verdict) -> None:
    reply = adapter().parse_submit(ORDER_ID, refusal(code))
    assert (reply.verdict, reply.code, reply.message) == (verdict, code, "错误")


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (b"1", Verdict.SUCCEEDED),
        (b"9", Verdict.FAILED),
        (b"0", Verdict.PROCESSING),
        (b"-1", Verdict.NOT_FOUND),
        (b"2", Verdict.UNKNOWN),
        (b"1001", Verdict.UNKNOWN),
    ],
)
def test_default_query_answers(body: bytes, verdict: Verdict) -> None:
    reply = HttpReply(status=200, headers={"Content-Type": "text/plain"}, body=body)
    assert adapter().parse_query([ORDER_ID], reply)[ORDER_ID].verdict is verdict


def test_codes_from_settings_override_the_defaults() -> None:
    overridden = adapter(
        {"1009": Verdict.NOT_EXECUTED, "1010": Verdict.NOT_EXECUTED, "1003": Verdict.UNKNOWN}
    )
    assert overridden.parse_submit(ORDER_ID, refusal("1010")).verdict is Verdict.NOT_EXECUTED
    assert overridden.parse_submit(ORDER_ID, refusal("1009")).verdict is Verdict.NOT_EXECUTED
    assert overridden.parse_submit(ORDER_ID, refusal("1003")).verdict is Verdict.UNKNOWN
    assert adapter().parse_submit(ORDER_ID, refusal("1010")).verdict is Verdict.UNKNOWN


def test_query_answers_are_overridable_data() -> None:
    overridden = adapter({"-1": Verdict.NOT_EXECUTED, "2": Verdict.PROCESSING})
    for body, verdict in ((b"-1", Verdict.NOT_EXECUTED), (b"2", Verdict.PROCESSING)):
        reply = HttpReply(status=200, headers={}, body=body)
        assert overridden.parse_query([ORDER_ID], reply)[ORDER_ID].verdict is verdict


def test_retcode_1_is_never_taken_from_the_table() -> None:
    overridden = adapter({"1": Verdict.FAILED})
    assert (
        overridden.parse_submit(ORDER_ID, FIXTURES.reply("submit-success.http")).verdict is Verdict.SUCCEEDED
    )


def refusal(code: str) -> HttpReply:
    body = f"<orderinfo><err_msg>错误</err_msg><retcode>{code}</retcode></orderinfo>"
    body = f'<?xml version="1.0" encoding="GB2312"?>\n{body}'
    return HttpReply(status=200, headers={}, body=body.encode("gb2312"))


# Forms


def test_read_form_decodes_gbk_percent_encoding() -> None:
    assert read_form(b"a=%B3%E4%D6%B5&b=x+y%2B&c=") == {"a": "充值", "b": "x y+", "c": ""}
    assert read_form("a=1\r\n") == {"a": "1"}


@pytest.mark.parametrize("data", [b"a=1&a=2", b"a", b"a=%FF", "a=充值".encode("gbk"), b"a=1&&b=2"])
def test_read_form_refuses_what_is_not_a_gbk_form(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the adapter maps them all alike
        read_form(data)


def test_acknowledge() -> None:
    assert adapter().acknowledge() == HttpResponse(status=200, content_type="text/plain", body=b"success")
