"""JuheAdapter against juhe.md: the test vectors byte for byte, and every fixture reply and callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

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
from adapters.juhe import FACE_VALUES_YUAN, JuheAdapter, callback_sign, submit_sign
from tests.adapters.cases import Fixtures

FIXTURES = Fixtures("juhe")
ORDER_ID = FIXTURES.order_id
CREDENTIALS = {"key": "demo-key", "openid": "demo-openid"}
VECTOR_SUBMIT_SIGN = "44985caf130ad394835f7d672bcf0c2b"
VECTOR_CALLBACK_SIGN = "339f2eb8ed851587ae54a4d753852ef3"
VECTOR_SPORDER_ID = "J2026112210000001"
VECTOR_URL = (
    "http://127.0.0.1:9103/ofpay/mobile/onlineorder?phoneno=13800138000&cardnum=50"
    f"&orderid=G01J8Z3Q7K2M4N6P8R0T2V4X6Z01&key=demo-key&sign={VECTOR_SUBMIT_SIGN}"
)


def adapter(codes: Mapping[str, Verdict] | None = None, **credentials: str) -> JuheAdapter:
    return JuheAdapter(
        AdapterSettings(
            name="juhe",
            base_url="http://127.0.0.1:9103/",
            credentials=CREDENTIALS | credentials,
            codes=codes or {},
        )
    )


def charge(**changes: Any) -> Charge:
    fields: dict[str, Any] = {
        "upstream_order_id": ORDER_ID,
        "sku": "50",
        "account": "13800138000",
        "account_kind": AccountKind.MOBILE_CN,
        "face_value_cents": 5000,
        "quantity": 1,
        "max_cost_cents": 4925,
        "callback_url": "http://127.0.0.1:8080/callbacks/juhe",
        "timestamp": 1_795_312_800.0,
    }
    return Charge(**(fields | changes))


def params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True))


def reply_with(error_code: int, headers: Mapping[str, str] | None = None) -> HttpReply:
    body = f'{{"reason":"x","result":null,"error_code":{error_code}}}'.encode()
    return HttpReply(status=200, headers=headers or {}, body=body)


# The test vectors (juhe.md)


def test_vector_submit_url_and_sign_byte_for_byte() -> None:
    request = adapter().build_submit(charge())
    assert request.method == "GET"
    assert request.url == VECTOR_URL
    assert request.body == b""


def test_vector_submit_sign_function() -> None:
    sign = submit_sign("demo-openid", "demo-key", "13800138000", "50", "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01")
    assert sign == VECTOR_SUBMIT_SIGN


def test_vector_callback_sign_function() -> None:
    assert callback_sign("demo-key", VECTOR_SPORDER_ID, ORDER_ID) == VECTOR_CALLBACK_SIGN


def test_vector_callback_fixture_carries_the_vector_sign() -> None:
    _, _, body = FIXTURES.load("callback-success.http")
    assert params("?" + body.decode())["sign"] == VECTOR_CALLBACK_SIGN
    assert adapter().parse_callback(FIXTURES.callback("callback-success.http")).verdict is Verdict.SUCCEEDED


# Submit requests


@pytest.mark.parametrize("yuan", FACE_VALUES_YUAN)
def test_every_face_value_is_sent_as_whole_yuan_and_signed(yuan: int) -> None:
    sent = params(adapter().build_submit(charge(face_value_cents=yuan * 100)).url)
    assert sent["cardnum"] == str(yuan)
    assert sent["sign"] == submit_sign("demo-openid", "demo-key", "13800138000", str(yuan), ORDER_ID)


def test_face_values_are_juhes() -> None:
    assert FACE_VALUES_YUAN == (5, 10, 20, 30, 50, 100, 200, 300, 500)


@pytest.mark.parametrize("face_value_cents", [4950, 4000, 100, 0, 50000 + 100, 100000, -5000])
def test_a_face_value_juhe_does_not_sell_is_refused_before_sending(face_value_cents: int) -> None:
    with pytest.raises(ValueError, match="face values are 5, 10, 20, 30, 50, 100, 200, 300, 500"):
        adapter().build_submit(charge(face_value_cents=face_value_cents))


@pytest.mark.parametrize("quantity", [0, 2, 10])
def test_quantity_must_be_one(quantity: int) -> None:
    with pytest.raises(ValueError, match=f"not a quantity of {quantity}"):
        adapter().build_submit(charge(quantity=quantity))


@pytest.mark.parametrize("kind", [AccountKind.QQ, AccountKind.GAME, AccountKind.ANY])
def test_only_mainland_mobile_numbers(kind: AccountKind) -> None:
    with pytest.raises(ValueError, match=f"mainland mobile numbers only, not {kind.value}"):
        adapter().build_submit(charge(account_kind=kind))


def test_sku_is_not_sent() -> None:
    assert adapter().build_submit(charge(sku="anything")).url == VECTOR_URL


def test_key_and_account_are_percent_encoded_but_signed_raw() -> None:
    odd = adapter(key="k&y=+/ 值")
    request = odd.build_submit(charge(account="138 0013&8000"))
    sent = params(request.url)
    assert sent["key"] == "k&y=+/ 值"
    assert sent["phoneno"] == "138 0013&8000"
    assert sent["sign"] == submit_sign("demo-openid", "k&y=+/ 值", "138 0013&8000", "50", ORDER_ID)
    assert list(sent) == ["phoneno", "cardnum", "orderid", "key", "sign"]


def test_each_order_signs_afresh() -> None:
    # The signing prefix is hashed once per adapter: one order's digest must not leak into the next.
    juhe = adapter()
    first = juhe.build_submit(charge(upstream_order_id="A0000001")).url
    juhe.build_submit(charge(upstream_order_id="B0000002"))
    assert juhe.build_submit(charge(upstream_order_id="A0000001")).url == first


# Query requests


def test_query_request() -> None:
    request = adapter().build_query([ORDER_ID], 0.0)
    assert request.method == "GET"
    assert request.url == f"http://127.0.0.1:9103/ofpay/mobile/ordersta?orderid={ORDER_ID}&key=demo-key"
    assert request.body == b""


@pytest.mark.parametrize("ids", [[], [ORDER_ID, ORDER_ID + "2"]])
def test_query_takes_exactly_one_id(ids: list[str]) -> None:
    with pytest.raises(ValueError, match="one order at a time"):
        adapter().build_query(ids, 0.0)
    with pytest.raises(ValueError, match="one order at a time"):
        adapter().parse_query(ids, reply_with(0))


# Settings


def test_settings_problems_are_all_listed() -> None:
    with pytest.raises(InvalidSettings) as raised:
        JuheAdapter(AdapterSettings(name="juhe", base_url="ftp://x", credentials={"key": ""}))
    assert raised.value.problems == (
        ("credentials.key", "empty"),
        ("credentials.openid", "missing"),
        ("base_url", "must be an http:// or https:// URL without query or fragment"),
    )


@pytest.mark.parametrize("base_url", ["", "127.0.0.1:9103", "http://", "http://h/?a=1", "http://h/#f"])
def test_bad_base_urls(base_url: str) -> None:
    with pytest.raises(InvalidSettings, match="base_url"):
        JuheAdapter(AdapterSettings(name="juhe", base_url=base_url, credentials=CREDENTIALS))


def test_base_url_path_is_kept() -> None:
    juhe = JuheAdapter(AdapterSettings(name="juhe", base_url="https://h/juhe/", credentials=CREDENTIALS))
    assert juhe.build_query([ORDER_ID], 0.0).url.startswith("https://h/juhe/ofpay/mobile/ordersta?")


def test_class_contract() -> None:
    assert JuheAdapter.protocol == "juhe"
    assert JuheAdapter.credential_keys == ("key", "openid")
    assert JuheAdapter.max_query_batch == 1


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


def test_callback_with_another_key_does_not_verify() -> None:
    with pytest.raises(BadSignature):
        adapter(key="other-key").parse_callback(FIXTURES.callback("callback-success.http"))


def test_callback_read_from_a_body_built_by_urlencode() -> None:
    fields = {
        "sporder_id": "J1",
        "orderid": "G2",
        "sta": "9",
        "err_msg": "余额 不足&退款",
        "sign": callback_sign("demo-key", "J1", "G2"),
    }
    body = urlencode(fields).encode()
    reply = adapter().parse_callback(
        InboundCallback(method="POST", query={}, content_type="application/x-www-form-urlencoded", body=body)
    )
    assert (reply.upstream_order_id, reply.verdict, reply.message, reply.supplier_order_id) == (
        "G2",
        Verdict.FAILED,
        "余额 不足&退款",
        "J1",
    )


# Code tables


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (10001, Verdict.NOT_EXECUTED),
        (10012, Verdict.THROTTLED),
        (208501, Verdict.NOT_EXECUTED),
        (208503, Verdict.BALANCE_INSUFFICIENT),
        (208505, Verdict.ACCOUNT_INVALID),
        (208508, Verdict.NOT_EXECUTED),
        (208509, Verdict.UNKNOWN),
        (208515, Verdict.UNKNOWN),
        (208516, Verdict.UNKNOWN),
        (208517, Verdict.UNKNOWN),
        (-1, Verdict.UNKNOWN),
        (10002, Verdict.UNKNOWN),
    ],
)
def test_default_submit_codes(code: int, verdict: Verdict) -> None:
    reply = adapter().parse_submit(ORDER_ID, reply_with(code))
    assert (reply.verdict, reply.code) == (verdict, str(code))


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (208516, Verdict.NOT_FOUND),
        (10001, Verdict.UNKNOWN),
        (10012, Verdict.UNKNOWN),
        (208501, Verdict.UNKNOWN),
        (208503, Verdict.UNKNOWN),
        (208505, Verdict.UNKNOWN),
        (208509, Verdict.UNKNOWN),
    ],
)
def test_default_query_codes(code: int, verdict: Verdict) -> None:
    assert adapter().parse_query([ORDER_ID], reply_with(code))[ORDER_ID].verdict is verdict


@pytest.mark.parametrize("operation", ["submit", "query"])
@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({}, None), ({"Retry-After": "5"}, 5.0), ({"retry-after": "0.5"}, 0.5), ({"Retry-After": "soon"}, None)],
)
def test_10012_carries_retry_after(operation: str, headers: dict[str, str], seconds: float | None) -> None:
    juhe = adapter()
    if operation == "submit":
        reply = juhe.parse_submit(ORDER_ID, reply_with(10012, headers))
        assert reply.verdict is Verdict.THROTTLED
    else:
        reply = juhe.parse_query([ORDER_ID], reply_with(10012, headers))[ORDER_ID]
        assert reply.verdict is Verdict.UNKNOWN
    assert reply.retry_after_seconds == seconds
    assert reply.throttled is (operation == "submit" or seconds is not None)


def test_retry_after_is_only_read_when_throttled() -> None:
    reply = adapter().parse_submit(ORDER_ID, reply_with(208503, {"Retry-After": "5"}))
    assert (reply.verdict, reply.retry_after_seconds) == (Verdict.BALANCE_INSUFFICIENT, None)


def test_codes_from_settings_override_the_defaults() -> None:
    overridden = adapter(
        {
            "208516": Verdict.NOT_EXECUTED,
            "208599": Verdict.NOT_EXECUTED,
            "208503": Verdict.UNKNOWN,
            "10013": Verdict.THROTTLED,
        }
    )
    assert overridden.parse_submit(ORDER_ID, reply_with(208599)).verdict is Verdict.NOT_EXECUTED
    assert overridden.parse_submit(ORDER_ID, reply_with(208503)).verdict is Verdict.UNKNOWN
    assert overridden.parse_submit(ORDER_ID, reply_with(10013)).verdict is Verdict.THROTTLED
    assert overridden.parse_query([ORDER_ID], reply_with(208516))[ORDER_ID].verdict is Verdict.NOT_EXECUTED
    # Even a code an operator declares throttling leaves a queried order unknown.
    throttled_query = overridden.parse_query([ORDER_ID], reply_with(10013, {"Retry-After": "4"}))[ORDER_ID]
    assert (throttled_query.verdict, throttled_query.retry_after_seconds) == (Verdict.UNKNOWN, 4.0)
    assert adapter().parse_submit(ORDER_ID, reply_with(208599)).verdict is Verdict.UNKNOWN


def test_acknowledge() -> None:
    assert adapter().acknowledge() == HttpResponse(status=200, content_type="text/plain", body=b"success")
