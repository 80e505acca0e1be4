"""FuluAdapter against fulu.md: the test vector byte for byte, and every fixture reply and callback."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters import fulu
from adapters.fulu import FuluAdapter, sign
from adapters.interface import (
    AccountKind,
    AdapterSettings,
    BadSignature,
    Charge,
    HttpReply,
    HttpResponse,
    InboundCallback,
    InvalidSettings,
    MalformedMessage,
    Verdict,
)
from tests.adapters.cases import Fixtures

FIXTURES = Fixtures("fulu")
ORDER_ID = FIXTURES.order_id
CREDENTIALS = {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}
VECTOR_TIME = 1_795_312_800.0  # 2026-11-22 10:00:00 in China
VECTOR_BIZ = (
    '{"charge_phone":"13800138000","charge_value":50,"customer_order_no":"G01J8Z3Q7K2M4N6P8R0T2V4X6Z01"}'
)
VECTOR_SIGN = "bb92097082085d74ab291205bb5d1456"


def adapter(codes: Mapping[str, Verdict] | None = None) -> FuluAdapter:
    return FuluAdapter(
        AdapterSettings(
            name="fulu", base_url="http://127.0.0.1:9101/", credentials=CREDENTIALS, codes=codes or {}
        )
    )


def charge(**changes: Any) -> Charge:
    fields: dict[str, Any] = {
        "upstream_order_id": ORDER_ID,
        "sku": "18221081",
        "account": "13800138000",
        "account_kind": AccountKind.MOBILE_CN,
        "face_value_cents": 5000,
        "quantity": 1,
        "max_cost_cents": 4930,
        "callback_url": "http://127.0.0.1:8080/callbacks/fulu",
        "timestamp": VECTOR_TIME,
    }
    return Charge(**(fields | changes))


# The test vector (fulu.md)


def test_vector_submit_reproduces_biz_content_and_sign_byte_for_byte() -> None:
    request = adapter().build_submit(charge())
    params = json.loads(request.body)
    assert params["biz_content"] == VECTOR_BIZ
    assert params["sign"] == VECTOR_SIGN
    assert params["timestamp"] == "2026-11-22 10:00:00"
    assert params["method"] == "fulu.order.mobile.add"
    assert sign(params, "demo-app-secret") == VECTOR_SIGN
    # The body is exactly the signed compact JSON with `sign` appended.
    assert request.body.decode() == fulu.compact_json(params)


def test_vector_sign_function_over_the_documented_parameters() -> None:
    params = {
        "app_key": "demo-app-key",
        "method": "fulu.order.mobile.add",
        "timestamp": "2026-11-22 10:00:00",
        "version": "2.0",
        "format": "json",
        "charset": "utf-8",
        "sign_type": "md5",
        "app_auth_token": "",
        "biz_content": VECTOR_BIZ,
    }
    assert sign(params, "demo-app-secret") == VECTOR_SIGN
    assert sign({**params, "sign": "ignored"}, "demo-app-secret") == VECTOR_SIGN
    # Key order does not matter: the characters are sorted.
    assert sign(dict(reversed(params.items())), "demo-app-secret") == VECTOR_SIGN


def test_signing_leaves_slash_and_non_ascii_unescaped() -> None:
    assert fulu.compact_json({"d": "充值/成功"}) == '{"d":"充值/成功"}'
    assert sign({"d": "充值/成功"}, "s") == fulu.sign_text('{"d":"充值/成功"}', "s")


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text(max_size=400) | st.text(st.characters(max_codepoint=127), max_size=400))
@example(text='{"a":"充值成功","b":"\u00e9\U0001f4b0 z"}')
def test_sorted_characters_is_the_code_point_sort(text: str) -> None:
    assert fulu.sorted_characters(text) == "".join(sorted(text)).encode(errors="surrogatepass")


@pytest.mark.parametrize(
    "account",
    ["13800138000", "player 1", "玩家一号", 'a"b\\c', "tab\there\n", "😀/x", "\x00\x1f\x7f", ""],
)
@pytest.mark.parametrize("app_key", ["demo-app-key", '键/"key"'])
def test_requests_are_the_compact_json_of_their_params_and_signed_over_it(account: str, app_key: str) -> None:
    """Built from a head serialized once: the body must still be exactly compact_json of the params."""
    one = FuluAdapter(
        AdapterSettings(
            name="fulu",
            base_url="http://127.0.0.1:9101/",
            credentials={"app_key": app_key, "app_secret": "demo-app-secret"},
        )
    )
    requests = [
        one.build_submit(charge(account=account)) if account.isdigit() else None,
        one.build_submit(charge(account_kind=AccountKind.GAME, account=account)),
        one.build_query([account or ORDER_ID], VECTOR_TIME),
        one.build_balance(VECTOR_TIME),
    ]
    for request in filter(None, requests):
        params = json.loads(request.body)
        assert request.body.decode() == fulu.compact_json(params)
        assert params["sign"] == sign(params, "demo-app-secret")
        assert params["app_key"] == app_key


def test_submit_request_envelope() -> None:
    request = adapter().build_submit(charge())
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:9101/api/getway"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    params = json.loads(request.body)
    assert {key: params[key] for key in ("app_key", "version", "format", "charset", "sign_type")} == {
        "app_key": "demo-app-key",
        "version": "2.0",
        "format": "json",
        "charset": "utf-8",
        "sign_type": "md5",
    }
    assert params["app_auth_token"] == ""


def test_timestamp_is_china_time_whatever_the_fraction() -> None:
    params = json.loads(adapter().build_submit(charge(timestamp=VECTOR_TIME + 0.999)).body)
    assert params["timestamp"] == "2026-11-22 10:00:00"
    params = json.loads(adapter().build_submit(charge(timestamp=VECTOR_TIME + 14 * 3600)).body)
    assert params["timestamp"] == "2026-11-23 00:00:00"


def test_mobile_quantity_multiplies_the_charge_value() -> None:
    params = json.loads(adapter().build_submit(charge(quantity=2)).body)
    assert json.loads(params["biz_content"])["charge_value"] == 100


def test_mobile_face_value_must_be_whole_yuan() -> None:
    with pytest.raises(ValueError, match="whole yuan"):
        adapter().build_submit(charge(face_value_cents=4950))


@pytest.mark.parametrize("kind", [AccountKind.QQ, AccountKind.GAME, AccountKind.ANY])
def test_direct_submit_for_other_account_kinds(kind: AccountKind) -> None:
    request = adapter().build_submit(charge(account_kind=kind, account="123456789", quantity=3))
    params = json.loads(request.body)
    assert params["method"] == "fulu.order.direct.add"
    assert json.loads(params["biz_content"]) == {
        "product_id": 18221081,
        "customer_order_no": ORDER_ID,
        "charge_account": "123456789",
        "buy_num": 3,
    }
    assert sign(params, "demo-app-secret") == params["sign"]


@pytest.mark.parametrize("sku", ["QB-10", "", "１２３", "12 3"])
def test_direct_submit_needs_a_numeric_sku(sku: str) -> None:
    with pytest.raises(ValueError, match="numeric sku"):
        adapter().build_submit(charge(account_kind=AccountKind.QQ, sku=sku))


def test_query_request() -> None:
    request = adapter().build_query([ORDER_ID], VECTOR_TIME)
    params = json.loads(request.body)
    assert request.url == "http://127.0.0.1:9101/api/getway"
    assert params["method"] == "fulu.order.info.get"
    assert json.loads(params["biz_content"]) == {"customer_order_no": ORDER_ID}
    assert sign(params, "demo-app-secret") == params["sign"]


@pytest.mark.parametrize("ids", [[], [ORDER_ID, ORDER_ID + "2"]])
def test_query_takes_exactly_one_id(ids: list[str]) -> None:
    with pytest.raises(ValueError, match="one order at a time"):
        adapter().build_query(ids, VECTOR_TIME)


# Settings


def test_settings_problems_are_all_listed() -> None:
    with pytest.raises(InvalidSettings) as raised:
        FuluAdapter(AdapterSettings(name="fulu", base_url="ftp://x", credentials={"app_key": ""}))
    assert raised.value.problems == (
        ("credentials.app_key", "empty"),
        ("credentials.app_secret", "missing"),
        ("base_url", "must be an http:// or https:// URL without query or fragment"),
    )


@pytest.mark.parametrize("base_url", ["", "127.0.0.1:9101", "http://", "http://h/?a=1", "http://h/#f"])
def test_bad_base_urls(base_url: str) -> None:
    with pytest.raises(InvalidSettings, match="base_url"):
        FuluAdapter(AdapterSettings(name="fulu", base_url=base_url, credentials=CREDENTIALS))


def test_class_contract() -> None:
    assert FuluAdapter.protocol == "fulu"
    assert FuluAdapter.credential_keys == ("app_key", "app_secret")
    assert FuluAdapter.max_query_batch == 1


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


def test_query_throttling_leaves_the_order_unknown() -> None:
    answer = adapter().parse_query([ORDER_ID], FIXTURES.reply("http-429-retry-after.http"))[ORDER_ID]
    assert answer.verdict is Verdict.UNKNOWN
    assert answer.retry_after_seconds == 3.0


def test_query_of_garbage_is_unknown() -> None:
    answer = adapter().parse_query([ORDER_ID], FIXTURES.reply("html-error-page.http"))[ORDER_ID]
    assert answer.verdict is Verdict.UNKNOWN


def test_wrong_secret_makes_a_good_reply_unknown() -> None:
    other = FuluAdapter(
        AdapterSettings(name="fulu", base_url="http://h", credentials={**CREDENTIALS, "app_secret": "other"})
    )
    assert other.parse_submit(ORDER_ID, FIXTURES.reply("submit-success.http")).verdict is Verdict.UNKNOWN


# Code table


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("1001", Verdict.NOT_EXECUTED),
        ("1002", Verdict.NOT_EXECUTED),
        ("2001", Verdict.NOT_EXECUTED),
        ("3001", Verdict.NOT_EXECUTED),
        ("3002", Verdict.NOT_EXECUTED),
        ("3003", Verdict.NOT_EXECUTED),
        ("3004", Verdict.BALANCE_INSUFFICIENT),
        ("3005", Verdict.NOT_EXECUTED),
        ("3006", Verdict.UNKNOWN),
        ("3007", Verdict.UNKNOWN),
        ("3008", Verdict.NOT_EXECUTED),
        ("4001", Verdict.ACCOUNT_INVALID),
        ("5000", Verdict.UNKNOWN),
        ("-1", Verdict.UNKNOWN),
        ("42", Verdict.UNKNOWN),
    ],
)
def test_default_submit_codes(code: str, verdict: Verdict) -> None:
    assert adapter().parse_submit(ORDER_ID, refusal(int(code))).verdict is verdict


@pytest.mark.parametrize(("code", "verdict"), [("3006", Verdict.NOT_FOUND), ("3004", Verdict.UNKNOWN)])
def test_default_query_codes(code: str, verdict: Verdict) -> None:
    assert adapter().parse_query([ORDER_ID], refusal(int(code)))[ORDER_ID].verdict is verdict


def test_codes_from_settings_override_the_defaults() -> None:
    overridden = adapter(
        {"3006": Verdict.NOT_EXECUTED, "6123": Verdict.NOT_EXECUTED, "3004": Verdict.UNKNOWN}
    )
    assert overridden.parse_submit(ORDER_ID, refusal(6123)).verdict is Verdict.NOT_EXECUTED
    assert overridden.parse_submit(ORDER_ID, refusal(3004)).verdict is Verdict.UNKNOWN
    assert overridden.parse_query([ORDER_ID], refusal(3006))[ORDER_ID].verdict is Verdict.NOT_EXECUTED
    assert adapter().parse_submit(ORDER_ID, refusal(6123)).verdict is Verdict.UNKNOWN


def refusal(code: int) -> HttpReply:
    body = fulu.compact_json({"code": code, "message": "x", "result": "", "sign": ""}).encode()
    return HttpReply(status=200, headers={}, body=body)


def test_acknowledge() -> None:
    assert adapter().acknowledge() == HttpResponse(status=200, content_type="text/plain", body=b"success")


def test_a_non_ascii_signature_is_refused_not_a_crash() -> None:
    adapter = FuluAdapter(
        AdapterSettings(name="fulu", base_url="http://127.0.0.1:9101", credentials=CREDENTIALS)
    )
    body = json.dumps(
        {"customer_order_no": "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01", "order_status": "success", "sign": "签名"}
    ).encode()
    with pytest.raises(BadSignature):
        adapter.parse_callback(
            InboundCallback(method="POST", query={}, content_type="application/json", body=body)
        )
    reply = HttpReply(
        status=200, headers={}, body=json.dumps({"code": 0, "result": "{}", "sign": "签名"}).encode()
    )
    assert adapter.parse_submit("G01J8Z3Q7K2M4N6P8R0T2V4X6Z01", reply).verdict is Verdict.UNKNOWN


# Callbacks hold the listed keys only, each a string (issue 8)
#
# fulu signs the sorted characters of the JSON, so moving characters around keeps the signature.
# With unknown keys accepted, a signed "failed" callback could be rearranged into a "success".


def _callback_fields(name: str) -> dict[str, str]:
    fields: dict[str, str] = json.loads(FIXTURES.load(name)[2])
    return fields


def _post(fields: Mapping[str, object]) -> InboundCallback:
    return InboundCallback(
        method="POST", query={}, content_type="application/json", body=fulu.compact_json(fields).encode()
    )


def _without(text: str, letters: str) -> str:
    for letter in letters:
        text = text.replace(letter, "", 1)
    return text


def test_a_failed_callback_rearranged_into_a_success_still_verifies_but_is_refused() -> None:
    failed = _callback_fields("callback-failed.http")
    # "failed" -> "success" takes s, s, s, u, c, c from three optional keys and leaves f, a, i, l, d
    # in one of them: the renamed keys are unknown to fulu.md, and nothing else changes.
    moved = {
        "recharge_description": ("ccs", "faild"),
        "operator_serial_number": ("su", ""),
        "charge_finish_time": ("s", ""),
    }
    forged: dict[str, str] = {}
    for key, value in failed.items():
        taken, given = moved.get(key, ("", ""))
        forged[_without(key, taken) + given] = value
    forged["order_status"] = "success"
    signed = {key: value for key, value in failed.items() if key != "sign"}
    unsigned = {key: value for key, value in forged.items() if key != "sign"}
    assert sorted(fulu.compact_json(unsigned)) == sorted(fulu.compact_json(signed))
    assert sign(forged, "demo-app-secret") == failed["sign"]  # the forgery verifies

    with pytest.raises(MalformedMessage, match=r"not in fulu\.md"):
        adapter().parse_callback(_post(forged))


def test_a_signed_callback_with_an_extra_key_is_refused() -> None:
    fields = _callback_fields("callback-success-direct.http")
    fields["refund"] = "1"
    fields["sign"] = sign(fields, "demo-app-secret")
    with pytest.raises(MalformedMessage, match="refund"):
        adapter().parse_callback(_post(fields))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("buy_num", 1),
        ("price", 49.3),
        ("product_id", 18221081),
        ("order_id", None),
        ("operator_serial_number", ["OP123"]),
        ("recharge_description", {"text": "充值成功"}),
        ("order_status", True),
        ("customer_order_no", 1),
    ],
)
def test_a_signed_callback_field_of_another_type_is_refused(key: str, value: object) -> None:
    fields: dict[str, object] = dict(_callback_fields("callback-success-direct.http"))
    fields[key] = value
    fields["sign"] = sign(fields, "demo-app-secret")
    with pytest.raises(MalformedMessage, match=key):
        adapter().parse_callback(_post(fields))


def test_a_callback_repeating_a_key_is_refused() -> None:
    # The last copy wins when parsed and only it is signed: the first is free text nobody signed.
    _, _, body = FIXTURES.load("callback-success-direct.http")
    repeated = b'{"order_status":"failed",' + body[1:]
    with pytest.raises(MalformedMessage, match="repeat"):
        adapter().parse_callback(
            InboundCallback(method="POST", query={}, content_type="application/json", body=repeated)
        )


def test_every_documented_callback_key_is_accepted() -> None:
    fields = _callback_fields("callback-success-direct.http")
    assert set(fields) == set(fulu.CALLBACK_FIELDS)
    reply = adapter().parse_callback(_post(fields))
    assert reply.verdict is Verdict.SUCCEEDED


@pytest.mark.parametrize("code", ["３００４", "²", "٣٠٠٤", "9" * 5000, "3004 ", "+3004"])
def test_a_code_string_of_anything_but_ascii_digits_is_unknown(code: str) -> None:
    # "３００４" used to read as 3004 (not executed: failover after a charge); "²" and 5000 digits
    # passed str.isdigit and then crashed int().
    body = fulu.compact_json({"code": code, "message": "x", "result": "", "sign": ""}).encode()
    reply = HttpReply(status=200, headers={}, body=body)
    assert adapter().parse_submit(ORDER_ID, reply).verdict is Verdict.UNKNOWN
    assert adapter().parse_query([ORDER_ID], reply)[ORDER_ID].verdict is Verdict.UNKNOWN


def test_a_code_string_of_ascii_digits_is_read() -> None:
    body = fulu.compact_json({"code": "-3004", "message": "x", "result": "", "sign": ""}).encode()
    assert adapter().parse_submit(ORDER_ID, HttpReply(status=200, headers={}, body=body)).code == "-3004"
