"""DayuanrenAdapter against dayuanren.md: the test vector byte for byte, every fixture reply and callback."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import pytest

from adapters.dayuanren import DayuanrenAdapter, decode_form, encode_form, sign, signed_text
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

FIXTURES = Fixtures("dayuanren")
ORDER_ID = FIXTURES.order_id
QUERY_IDS: list[str] = FIXTURES.cases["query_ids"]
CREDENTIALS = {"userid": "10001", "apikey": "demo-apikey"}

# The test vector (dayuanren.md), which signs no `price`.
VECTOR_FIELDS = {
    "userid": "10001",
    "out_trade_num": "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01",
    "product_id": "101",
    "mobile": "13800138000",
    "notify_url": "http://127.0.0.1:8080/callbacks/dyr",
    "amount": "50",
}
VECTOR_TEXT = (
    "amount=50&mobile=13800138000&notify_url=http://127.0.0.1:8080/callbacks/dyr"
    "&out_trade_num=G01J8Z3Q7K2M4N6P8R0T2V4X6Z01&product_id=101&userid=10001&apikey=demo-apikey"
)
VECTOR_SIGN = "ABDE5510C9905654AE77E3FCD0B5E821"
# The same submit as the gateway sends it, with the price cap the vector leaves out.
SUBMIT_TEXT = (
    "amount=50&mobile=13800138000&notify_url=http://127.0.0.1:8080/callbacks/dyr"
    "&out_trade_num=G01J8Z3Q7K2M4N6P8R0T2V4X6Z01&price=49.30&product_id=101&userid=10001&apikey=demo-apikey"
)
SUBMIT_SIGN = "41F7EA96F27D4907C7E05963F11B68D6"
SUBMIT_BODY = (
    b"amount=50&mobile=13800138000&notify_url=http%3A%2F%2F127.0.0.1%3A8080%2Fcallbacks%2Fdyr"
    b"&out_trade_num=G01J8Z3Q7K2M4N6P8R0T2V4X6Z01&price=49.30&product_id=101&userid=10001&sign="
    + SUBMIT_SIGN.encode()
)


def adapter(codes: Mapping[str, Verdict] | None = None, **credentials: str) -> DayuanrenAdapter:
    return DayuanrenAdapter(
        AdapterSettings(
            name="dyr",
            base_url="http://127.0.0.1:9104/",
            credentials=CREDENTIALS | credentials,
            codes=codes or {},
        )
    )


def charge(**changes: Any) -> Charge:
    fields: dict[str, Any] = {
        "upstream_order_id": ORDER_ID,
        "sku": "101",
        "account": "13800138000",
        "account_kind": AccountKind.MOBILE_CN,
        "face_value_cents": 5000,
        "quantity": 1,
        "max_cost_cents": 4930,
        "callback_url": "http://127.0.0.1:8080/callbacks/dyr",
        "timestamp": 1_795_312_800.0,
    }
    return Charge(**(fields | changes))


def md5_upper(text: str) -> str:
    """MD5 as dayuanren.md states it, written out here so the tests do not trust the adapter's own."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest().upper()


def form_fields(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True))


# The test vector (dayuanren.md)


def test_vector_signed_text_and_sign_byte_for_byte() -> None:
    assert signed_text(VECTOR_FIELDS, "demo-apikey") == VECTOR_TEXT
    assert sign(VECTOR_FIELDS, "demo-apikey") == VECTOR_SIGN


def test_vector_sign_ignores_sign_and_field_order() -> None:
    assert sign({**VECTOR_FIELDS, "sign": "ignored"}, "demo-apikey") == VECTOR_SIGN
    assert sign(dict(reversed(VECTOR_FIELDS.items())), "demo-apikey") == VECTOR_SIGN


def test_vector_submit_body_byte_for_byte() -> None:
    request = adapter().build_submit(charge())
    assert request.body == SUBMIT_BODY
    fields = form_fields(request.body)
    assert {key: value for key, value in fields.items() if key not in {"price", "sign"}} == VECTOR_FIELDS
    assert sign({key: value for key, value in fields.items() if key != "price"}, "demo-apikey") == VECTOR_SIGN
    assert signed_text(fields, "demo-apikey") == SUBMIT_TEXT
    assert fields["sign"] == sign(fields, "demo-apikey") == SUBMIT_SIGN


def test_signing_is_over_plain_utf8_values() -> None:
    fields = {"remark": "充值 成功", "notify_url": "http://h/cb?a=1&b=2", "empty": ""}
    text = "empty=&notify_url=http://h/cb?a=1&b=2&remark=充值 成功&apikey=k"
    assert signed_text(fields, "k") == text
    assert sign(fields, "k") == md5_upper(text)


def test_submit_request_shape() -> None:
    request = adapter().build_submit(charge())
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:9104/yrapi.php/index/recharge"
    assert request.headers == {"Content-Type": "application/x-www-form-urlencoded"}


def test_submit_escapes_values_in_the_body_and_signs_them_plain() -> None:
    request = adapter().build_submit(
        charge(
            account="user@example.com", sku="QB 10&x", callback_url="https://gw/cb?s=a+b", max_cost_cents=5
        )
    )
    fields = form_fields(request.body)
    assert (fields["mobile"], fields["product_id"], fields["notify_url"], fields["price"]) == (
        "user@example.com",
        "QB 10&x",
        "https://gw/cb?s=a+b",
        "0.05",
    )
    assert fields["sign"] == sign(fields, "demo-apikey")


def test_one_adapter_encodes_each_charge_values_whatever_came_before() -> None:
    """The adapter remembers the last value it had to quote: another must never get its encoding."""
    one = adapter()
    urls = [
        "http://127.0.0.1:8080/callbacks/dyr",
        "https://gw/cb?s=a+b",
        "http://127.0.0.1:8080/callbacks/dyr",
    ]
    for url in urls:
        for account in ("13800138000", "a b+c", "13800138000"):
            body = one.build_submit(charge(callback_url=url, account=account)).body
            assert body.startswith(
                b"amount=50&mobile=%s&notify_url=%s&"
                % (quote_plus(account).encode(), quote_plus(url).encode())
            )
            fields = form_fields(body)
            assert (fields["notify_url"], fields["mobile"]) == (url, account)
            assert fields["sign"] == sign(fields, "demo-apikey")


@pytest.mark.parametrize("quantity", [0, 2, 10])
def test_submit_has_no_quantity(quantity: int) -> None:
    with pytest.raises(ValueError, match="no quantity field"):
        adapter().build_submit(charge(quantity=quantity))


@pytest.mark.parametrize("face_value_cents", [4950, 1, 0])
def test_submit_amount_is_whole_yuan(face_value_cents: int) -> None:
    with pytest.raises(ValueError, match="whole yuan"):
        adapter().build_submit(charge(face_value_cents=face_value_cents))


def test_query_request() -> None:
    request = adapter().build_query(QUERY_IDS[:3], 0.0)
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:9104/yrapi.php/index/check"
    assert request.headers == {"Content-Type": "application/x-www-form-urlencoded"}
    fields = form_fields(request.body)
    assert fields == {
        "out_trade_nums": ",".join(QUERY_IDS[:3]),
        "userid": "10001",
        "sign": md5_upper(f"out_trade_nums={','.join(QUERY_IDS[:3])}&userid=10001&apikey=demo-apikey"),
    }


def test_query_takes_up_to_fifty_ids() -> None:
    ids = [f"G{n:029d}01" for n in range(50)]
    assert form_fields(adapter().build_query(ids, 0.0).body)["out_trade_nums"] == ",".join(ids)
    with pytest.raises(ValueError, match="1 to 50"):
        adapter().build_query([*ids, "G1"], 0.0)
    with pytest.raises(ValueError, match="1 to 50"):
        adapter().build_query([], 0.0)


@pytest.mark.parametrize("bad", ["", "G1,G2"])
def test_query_ids_must_not_break_the_list(bad: str) -> None:
    with pytest.raises(ValueError, match="commas"):
        adapter().build_query([ORDER_ID, bad], 0.0)


def test_form_round_trip_and_refusals() -> None:
    fields = {"remark": "充值 成功", "url": "http://h/?a=1&b=2", "empty": ""}
    assert decode_form(encode_form(fields)) == fields
    with pytest.raises(ValueError, match="repeated"):
        decode_form(b"a=1&a=2")
    with pytest.raises(ValueError, match="UTF-8"):
        decode_form(b"a=%B3%E4")
    with pytest.raises(ValueError, match="bad query field"):
        decode_form(b"a=1&&b=2")
    with pytest.raises(ValueError, match="Max number of fields"):
        decode_form(b"&".join(b"f%d=1" % n for n in range(101)))


# Settings


def test_settings_problems_are_all_listed() -> None:
    with pytest.raises(InvalidSettings) as raised:
        DayuanrenAdapter(
            AdapterSettings(
                name="dyr",
                base_url="ftp://x",
                credentials={"userid": ""},
                codes={"E42": Verdict.NOT_EXECUTED, "1002": Verdict.UNKNOWN, "01005": Verdict.UNKNOWN},
            )
        )
    assert raised.value.problems == (
        ("credentials.userid", "empty"),
        ("credentials.apikey", "missing"),
        ("base_url", "must be an http:// or https:// URL without query or fragment"),
        ("codes.E42", "dayuanren errno codes are integers like 1002"),
        ("codes.01005", "dayuanren errno codes are integers like 1002"),
    )


@pytest.mark.parametrize("base_url", ["", "127.0.0.1:9104", "http://", "http://h/?a=1", "http://h/#f"])
def test_bad_base_urls(base_url: str) -> None:
    with pytest.raises(InvalidSettings, match="base_url"):
        DayuanrenAdapter(AdapterSettings(name="dyr", base_url=base_url, credentials=CREDENTIALS))


def test_base_url_path_is_kept() -> None:
    prefixed = DayuanrenAdapter(
        AdapterSettings(name="dyr", base_url="https://h/v2/", credentials=CREDENTIALS)
    )
    assert prefixed.build_submit(charge()).url == "https://h/v2/yrapi.php/index/recharge"
    assert prefixed.build_query([ORDER_ID], 0.0).url == "https://h/v2/yrapi.php/index/check"


def test_class_contract() -> None:
    assert DayuanrenAdapter.protocol == "dayuanren"
    assert DayuanrenAdapter.credential_keys == ("userid", "apikey")
    assert DayuanrenAdapter.max_query_batch == 50


# Fixtures


def test_every_fixture_has_a_case_and_every_case_a_fixture() -> None:
    assert FIXTURES.listed() == FIXTURES.files()


@pytest.mark.parametrize("name", FIXTURES.names("submit"))
def test_submit_fixture(name: str) -> None:
    FIXTURES.check_submit(adapter(), name)


@pytest.mark.parametrize("name", FIXTURES.names("query"))
def test_query_fixture(name: str) -> None:
    # A batch protocol: every id asked gets its own expectation (`answers`, else `others`).
    reply = FIXTURES.reply(name)
    case = FIXTURES.cases["query"][name]
    answers = adapter().parse_query(QUERY_IDS, reply)
    assert list(answers) == QUERY_IDS
    for upstream_order_id in QUERY_IDS:
        expected = case.get("answers", {}).get(upstream_order_id, case.get("others"))
        assert expected is not None, f"{name} says nothing about {upstream_order_id}"
        FIXTURES.check(answers[upstream_order_id], expected, reply.body, upstream_order_id)


@pytest.mark.parametrize("name", FIXTURES.names("callback"))
def test_callback_fixture(name: str) -> None:
    FIXTURES.check_callback(adapter(), name)


def test_query_of_a_subset_answers_exactly_the_ids_asked() -> None:
    asked = [QUERY_IDS[4], QUERY_IDS[1]]
    answers = adapter().parse_query(asked, FIXTURES.reply("query-every-state.http"))
    assert list(answers) == asked
    assert [answer.verdict for answer in answers.values()] == [Verdict.PARTIAL, Verdict.SUCCEEDED]


def test_callback_fields_are_verified_not_the_content_type() -> None:
    callback = FIXTURES.callback("callback-success.http")
    relabelled = InboundCallback(method="POST", query={}, content_type="text/plain", body=callback.body)
    assert adapter().parse_callback(relabelled).verdict is Verdict.SUCCEEDED


def test_callback_of_another_merchant_does_not_verify_with_our_key() -> None:
    with pytest.raises(BadSignature):
        adapter(apikey="other-apikey").parse_callback(FIXTURES.callback("callback-success.http"))
    with pytest.raises(BadSignature, match="userid"):
        adapter(userid="10002").parse_callback(FIXTURES.callback("callback-success.http"))


# Code table


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (1, Verdict.NOT_EXECUTED),
        (1001, Verdict.NOT_EXECUTED),
        (1002, Verdict.BALANCE_INSUFFICIENT),
        (1003, Verdict.NOT_EXECUTED),
        (1004, Verdict.NOT_EXECUTED),
        (1005, Verdict.UNKNOWN),
        (1006, Verdict.ACCOUNT_INVALID),
        (500, Verdict.UNKNOWN),
        (2, Verdict.UNKNOWN),
        (-1, Verdict.UNKNOWN),
        (9999, Verdict.UNKNOWN),
    ],
)
def test_default_submit_codes(code: int, verdict: Verdict) -> None:
    reply = adapter().parse_submit(ORDER_ID, refusal(code))
    assert (reply.verdict, reply.code) == (verdict, str(code))


def test_codes_from_settings_override_the_defaults() -> None:
    overridden = adapter(
        {"1005": Verdict.NOT_EXECUTED, "6123": Verdict.NOT_EXECUTED, "1002": Verdict.UNKNOWN}
    )
    assert overridden.parse_submit(ORDER_ID, refusal(1005)).verdict is Verdict.NOT_EXECUTED
    assert overridden.parse_submit(ORDER_ID, refusal(6123)).verdict is Verdict.NOT_EXECUTED
    assert overridden.parse_submit(ORDER_ID, refusal(1002)).verdict is Verdict.UNKNOWN
    assert adapter().parse_submit(ORDER_ID, refusal(6123)).verdict is Verdict.UNKNOWN


@pytest.mark.parametrize("code", [1, 1002, 1005])
def test_overrides_never_reach_a_refused_query(code: int) -> None:
    # A refused query is about the request, not the orders: no table may fail them over.
    overridden = adapter({str(code): Verdict.NOT_EXECUTED})
    answers = overridden.parse_query(QUERY_IDS[:2], refusal(code))
    assert {answer.verdict for answer in answers.values()} == {Verdict.UNKNOWN}


def refusal(code: int) -> HttpReply:
    body = f'{{"errno":{code},"errmsg":"x","data":[]}}'.encode()
    return HttpReply(status=200, headers={}, body=body)


def test_acknowledge() -> None:
    assert adapter().acknowledge() == HttpResponse(status=200, content_type="text/plain", body=b"success")


def test_a_signature_is_ascii_hex_before_any_case_mapping() -> None:
    # "ﬀ".upper() is "FF": a sign holding the ligature where the real one has "FF" used to verify.
    fields = form_fields(FIXTURES.callback("callback-success.http").body)
    for remark in (f"充值成功{n}" for n in range(1000)):
        fields = {**fields, "remark": remark}
        fields["sign"] = sign(fields, "demo-apikey")
        if "FF" in fields["sign"]:
            break
    assert adapter().parse_callback(callback(fields)).verdict is Verdict.SUCCEEDED
    ligature = {**fields, "sign": fields["sign"].replace("FF", "ﬀ", 1)}
    with pytest.raises(BadSignature):
        adapter().parse_callback(callback(ligature))


@pytest.mark.parametrize("amount", ["２０.００", "٢٠.٠٠", "2０.00"])
def test_a_partial_amount_in_other_digits_is_malformed(amount: str) -> None:
    fields = form_fields(FIXTURES.callback("callback-partial.http").body) | {"charge_amount": amount}
    fields["sign"] = sign(fields, "demo-apikey")
    with pytest.raises(MalformedMessage, match="charge_amount"):
        adapter().parse_callback(callback(fields))


def callback(fields: Mapping[str, str]) -> InboundCallback:
    return InboundCallback(
        method="POST", query={}, content_type="application/x-www-form-urlencoded", body=encode_form(fields)
    )
