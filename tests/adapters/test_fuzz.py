"""Every adapter parser fed random and mutated supplier bytes: a verdict or a documented refusal comes out.

`parse_submit` and `parse_query` answer anything with a `SupplierReply` (garbage is `unknown`);
`parse_callback` answers with one or raises `BadSignature` / `MalformedMessage`, the two refusals
gateway/callbacks.py turns into a 401 or 400. Any other exception is an adapter bug. The fixture
files are the seeds; signed variants reach the code behind each signature check. Each counterexample
the fuzz ever found stays below as an `@example`, so it is tried first on every run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters import dayuanren, fulu, juhe, ofpay
from adapters.interface import (
    AdapterSettings,
    BadSignature,
    HttpReply,
    HttpResponse,
    InboundCallback,
    MalformedMessage,
    SupplierAdapter,
    SupplierReply,
    Verdict,
)
from adapters.registry import ADAPTERS, adapter_factory

FIXTURES: Final = Path(__file__).parent.parent / "fixtures"
ORDER_ID: Final = "G01J8Z3Q7K2M4N6P8R0T2V4X6Z01"
CREDENTIALS: Final[Mapping[str, Mapping[str, str]]] = {
    "fulu": {"app_key": "demo-app-key", "app_secret": "demo-app-secret"},
    "juhe": {"key": "demo-key", "openid": "demo-openid"},
    "ofpay": {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
    "dayuanren": {"userid": "10001", "apikey": "demo-apikey"},
}
"""The credentials the fixtures are signed with (each protocol's test vector)."""

FORM_ENCODINGS: Final[Mapping[str, str]] = {"juhe": "utf-8", "ofpay": "gbk", "dayuanren": "utf-8"}
"""How each form-speaking protocol percent-encodes its callbacks."""
QUERY_IDS: Final[tuple[str, ...]] = tuple(
    tomllib.loads((FIXTURES / "dayuanren" / "cases.toml").read_text(encoding="utf-8"))["query_ids"]
)
"""The ids dayuanren's query fixtures answer about."""

REFUSALS: Final = (BadSignature, MalformedMessage)
"""What `parse_callback` may raise (gateway/callbacks.py answers them); nothing else may escape."""

EXPLORE: Final = int(os.environ.get("FUZZ_EXAMPLES", "0"))
"""Set FUZZ_EXAMPLES=20000 to hunt for new bugs with fresh random examples; CI leaves it unset."""

FUZZ: Final = settings(
    max_examples=EXPLORE or 250,
    deadline=None,
    # Unless exploring, the same examples on every run: CI fails on a bug, never on a coin toss.
    derandomize=not EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

TOKENS: Final = (
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"-0",
    b"0.000000001",
    b"9" * 40,
    b"9" * 5000,  # past int()'s 4300-digit limit
    b"18446744073709551616",
    b"true",
    b"null",
    b"[]",
    b"{}",
    b"[" * 3000,
    b'{"a":' * 1500,
    b'"\\ud800"',
    b"\\u0000",
    b'"\\u0033"',
    "３００４".encode(),  # full-width digits: int() and \d take them
    "²".encode(),  # a digit to str.isdigit, not to int()
    "٣".encode(),
    "𝟗".encode(),
    "４９.３０".encode(),
    "充值成功".encode(),
    "充值成功".encode("gbk"),
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xff\xfe",
    b'"',
    b"\\",
    b",",
    b":",
    b"<",
    b">",
    b"&lt;",
    b"&#0;",
    b"&#xD800;",
    b"&#x4E2D;",
    b"&bogus;",
    b"&amp;",
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
    b'<!ENTITY x SYSTEM "file:///etc/passwd">',
    b"<![CDATA[<retcode>1</retcode>]]>",
    b"<?xml version='1.0' encoding='UTF-16'?>",
    b"<retcode>1</retcode>",
    b"<game_state>1</game_state>",
    b"<sporder_id>" + ORDER_ID.encode() + b"</sporder_id>",
    b"<a>" * 500,
    b"%",
    b"%FF",
    b"%E4%B8",
    b"%ED%A0%80",
    b"+",
    b"&",
    b"=",
    b"&&",
    b"sign=",
    b"state=3",
    b"charge_amount=%EF%BC%94%EF%BC%99",
    b"ret_code=1",
    b"sta=1",
    ORDER_ID.encode(),
)
"""Byte strings that break parsers: odd numbers, deep nesting, escapes, non-ASCII digits, entities."""

CHARSETS: Final = ("utf-8", "gb18030", "gbk", "big5", "utf-16", "utf-16-be", "latin-1", "utf-8-sig", "cp1252")

TEXTS: Final = (
    "",
    "0",
    "1",
    "2",
    "3",
    "9",
    "-1",
    "00",
    "1.0",
    "49.30",
    "49.3000",
    "0.01",
    "1e3",
    "NaN",
    "success",
    "failed",
    "processing",
    "untreated",
    "３",
    "１",
    "²",
    "٣",
    "４９.３０",
    "3004",
    "３００４",
    "10001",
    "10001",
    "A1234567",
    "demo-key",
    ORDER_ID,
    ORDER_ID + "X",
    "F2026112210000001",
    "J2026112210000001",
    "充值成功",
    "\x00",
    "\U0001f4b0",
    "ﬀ",
)
"""Field values that matter to the adapters, and near misses."""

KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "fulu": (
        "code",
        "message",
        "result",
        "sign",
        "order_id",
        "customer_order_no",
        "order_state",
        "order_price",
        "order_status",
        "charge_finish_time",
        "recharge_description",
        "product_id",
        "price",
        "buy_num",
        "operator_serial_number",
    ),
    "juhe": (
        "reason",
        "error_code",
        "result",
        "game_state",
        "uorderid",
        "sporder_id",
        "ordercash",
        "uordercash",
        "orderid",
        "sta",
        "err_msg",
        "sign",
    ),
    "ofpay": (
        "orderinfo",
        "err_msg",
        "retcode",
        "orderid",
        "cardid",
        "cardnum",
        "ordercash",
        "sporder_id",
        "game_state",
        "ret_code",
        "sign",
    ),
    "dayuanren": (
        "errno",
        "errmsg",
        "data",
        "order_number",
        "out_trade_num",
        "total_price",
        "state",
        "charge_amount",
        "userid",
        "remark",
        "voucher",
        "sign",
    ),
}
"""Each protocol's field names, for generated messages that get past the envelope."""


# Seeds


@cache
def seeds(protocol: str, kind: str) -> tuple[bytes, ...]:
    """The bodies of `protocol`'s fixture replies (`kind` "reply") or callbacks ("callback")."""
    bodies = []
    for path in sorted((FIXTURES / protocol).glob("*.http")):
        head, _, body = path.read_bytes().partition(b"\n\n")
        if head.startswith(b"HTTP/") == (kind == "reply"):
            bodies.append(body)
    return tuple(bodies)


@cache
def json_seeds(protocol: str, kind: str) -> tuple[dict[str, Any], ...]:
    """The seeds that are JSON objects, parsed; a fulu reply's `result` string is parsed too."""
    parsed = []
    for body in seeds(protocol, kind):
        try:
            value = json.loads(body)
        except ValueError:
            continue
        if isinstance(value, dict):
            if protocol == "fulu" and isinstance(value.get("result"), str):
                with contextlib.suppress(ValueError):
                    value["result"] = json.loads(value["result"])
            parsed.append(value)
    return tuple(parsed)


@cache
def form_seeds(protocol: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The callback seeds that are forms, as their fields in order."""
    encoding = FORM_ENCODINGS[protocol]
    forms = []
    for body in seeds(protocol, "callback"):
        try:
            pairs = parse_qsl(
                body.decode("ascii"), keep_blank_values=True, encoding=encoding, errors="strict"
            )
        except ValueError:
            continue
        if pairs:
            forms.append(tuple(pairs))
    return tuple(forms)


@cache
def adapter(protocol: str) -> SupplierAdapter:
    return adapter_factory(protocol)(
        AdapterSettings(name=protocol, base_url="http://127.0.0.1:9100", credentials=CREDENTIALS[protocol])
    )


# Strategies

digitish = st.text(st.sampled_from("0123456789-.+eE ３４²٣𝟗١"), min_size=1, max_size=8) | st.just("9" * 5000)
"""Numbers as suppliers might write them, with the digits `int()` and `\\d` take but ASCII has not."""
texts = st.sampled_from(TEXTS) | digitish | st.text(max_size=12)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)


def json_values(protocol: str) -> st.SearchStrategy[object]:
    keys = st.sampled_from(KEYS[protocol]) | st.text(max_size=4)
    return st.recursive(
        json_leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
        max_leaves=12,
    )


def json_text(value: object, ascii_only: bool = True) -> str:
    # allow_nan: NaN and Infinity are not JSON, which is the point.
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True, separators=(",", ":"))


@st.composite
def mutated(draw: st.DrawFn, bodies: Sequence[bytes]) -> bytes:
    """A seed after one to four byte-level mutations."""
    body = draw(st.sampled_from(bodies))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        match draw(st.integers(0, 6)):
            case 0:  # flip bits of one byte
                if body:
                    at = min(at, len(body) - 1)
                    body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]
            case 1:  # truncate
                body = body[:at]
            case 2:  # insert random bytes
                body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
            case 3:  # insert a token that breaks parsers
                body = body[:at] + draw(st.sampled_from(TOKENS)) + body[at:]
            case 4:  # replace a stretch with a token
                end = draw(st.integers(at, min(len(body), at + 12)))
                body = body[:at] + draw(st.sampled_from(TOKENS)) + body[end:]
            case 5:  # repeat a stretch
                end = draw(st.integers(at, min(len(body), at + 40)))
                body = body[:end] + body[at:end] + body[end:]
            case _:  # the right characters in the wrong charset
                text = body.decode(draw(st.sampled_from(("utf-8", "gb18030"))), errors="replace")
                body = text.encode(draw(st.sampled_from(CHARSETS)), errors="replace")
    return body


Place = tuple[str | int, ...]


def _paths(value: object, path: Place = ()) -> list[Place]:
    """Every place in a parsed JSON value, the root first."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _replaced(value: Any, path: Place, new: object, *, delete: bool = False) -> Any:
    """A copy of `value` with the place at `path` set to `new` (or removed)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replaced(value[head], rest, new, delete=delete)
    return copy


def _retyped(value: object) -> object:
    """A number as a string and a string of digits as a number: what suppliers mix up."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return [value]
    return json_text(value)


@st.composite
def tree_mutant(draw: st.DrawFn, protocol: str, trees: Sequence[dict[str, Any]]) -> Any:
    """A parsed seed after one to three changes to its fields: replaced, retyped, removed or added."""
    tree: Any = draw(st.sampled_from(trees))
    for _ in range(draw(st.integers(1, 3))):
        # The root only now and then: a message that is not an object at all stops at the first check.
        paths = _paths(tree)
        path = draw(st.sampled_from(paths[1:])) if len(paths) > 1 and draw(st.integers(0, 9)) else ()
        match draw(st.integers(0, 6)):
            case 0 | 1 | 2:  # most changes keep the type: they get furthest
                tree = _replaced(
                    tree, path, draw(texts if isinstance(_get(tree, path), str) else json_leaves)
                )
            case 6:
                tree = _replaced(tree, path, draw(json_values(protocol)))
            case 2 if path:
                tree = _replaced(tree, path, None, delete=True)
            case 3:
                target = _get(tree, path)
                if isinstance(target, dict):
                    key = draw(st.sampled_from(KEYS[protocol]) | st.text(max_size=4))
                    tree = _replaced(tree, path, {**target, key: draw(json_leaves)})
            case _:
                tree = _replaced(tree, path, _retyped(_get(tree, path)))
    return tree


def _get(value: Any, path: Place) -> Any:
    for step in path:
        value = value[step]
    return value


def json_mutants(protocol: str, kind: str) -> st.SearchStrategy[bytes]:
    """Seeds changed field by field; a fulu reply's `result` is re-signed, most of the time."""
    trees = json_seeds(protocol, kind)
    if not trees:
        return st.nothing()

    def encode(tree: Any, ascii_only: bool, resign: bool) -> bytes:
        if protocol == "fulu" and isinstance(tree, dict) and not isinstance(tree.get("result", ""), str):
            result = json_text(tree["result"], ascii_only)
            tree = {**tree, "result": result}
            if resign:
                tree["sign"] = fulu.sign_text(result, CREDENTIALS["fulu"]["app_secret"])
        return json_text(tree, ascii_only).encode()

    return st.builds(encode, tree_mutant(protocol, trees), st.booleans(), st.integers(0, 3).map(bool))


@st.composite
def xml_mutant(draw: st.DrawFn) -> bytes:
    """An ofpay reply seed with one to three elements replaced, emptied, repeated, removed or added."""
    body = draw(st.sampled_from(seeds("ofpay", "reply")))
    for _ in range(draw(st.integers(1, 3))):
        elements = list(_ELEMENT.finditer(body))
        if not elements:
            break
        found = draw(st.sampled_from(elements))
        name = found.group(1)
        value = draw(texts).encode("gb18030") if draw(st.booleans()) else draw(st.sampled_from(TOKENS))
        match draw(st.integers(0, 3)):
            case 0:
                change = b"<%s>%s</%s>" % (name, value, name)
            case 1:
                change = found.group(0) * 2
            case 2:
                change = b""
            case _:
                extra = draw(st.sampled_from(KEYS["ofpay"])).encode()
                change = found.group(0) + b"<%s>%s</%s>" % (extra, value, extra)
        body = body[: found.start()] + change + body[found.end() :]
    return body


_ELEMENT: Final = re.compile(rb"<([a-z_]+)>([^<]*)</\1>")


@st.composite
def form_mutant(draw: st.DrawFn, protocol: str) -> bytes:
    """A callback form seed with fields changed, then signed again (most of the time) and encoded."""
    fields = list(draw(st.sampled_from(form_seeds(protocol))))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(fields)))
        match draw(st.integers(0, 5)):
            case 0 | 1 | 2 if fields:  # most changes are new values: they get furthest
                at = min(at, len(fields) - 1)
                fields[at] = (fields[at][0], draw(texts))
            case 3 if fields:
                del fields[min(at, len(fields) - 1)]
            case 4 if fields:
                fields.insert(at, fields[min(at, len(fields) - 1)])  # a repeated field
            case _:
                fields.insert(at, (draw(st.sampled_from(KEYS[protocol]) | st.text(max_size=4)), draw(texts)))
    if draw(st.integers(0, 3)):
        fields = FORM_SIGNERS[protocol](fields)
    encoding = FORM_ENCODINGS[protocol]
    return urlencode(fields, encoding=encoding, errors="replace").encode("ascii")


def _sign_juhe(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    values = dict(fields)
    sign = juhe.callback_sign(
        CREDENTIALS["juhe"]["key"], values.get("sporder_id", ""), values.get("orderid", "")
    )
    return [(key, value) for key, value in fields if key != "sign"] + [("sign", sign)]


def _sign_ofpay(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    values = dict(fields)
    credentials = CREDENTIALS["ofpay"]
    try:
        sign = ofpay.callback_sign(
            credentials["userid"],
            values.get("ret_code", ""),
            values.get("sporder_id", ""),
            credentials["keystr"],
        )
    except UnicodeEncodeError:
        return fields  # outside GBK: nothing ofpay could have signed
    return [(key, value) for key, value in fields if key != "sign"] + [("sign", sign)]


def _sign_dayuanren(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
    sign = dayuanren.sign(dict(fields), CREDENTIALS["dayuanren"]["apikey"])
    return [(key, value) for key, value in fields if key != "sign"] + [("sign", sign)]


FORM_SIGNERS: Final[Mapping[str, Callable[[list[tuple[str, str]]], list[tuple[str, str]]]]] = {
    "juhe": _sign_juhe,
    "ofpay": _sign_ofpay,
    "dayuanren": _sign_dayuanren,
}


def fulu_callbacks() -> st.SearchStrategy[bytes]:
    """fulu callback seeds changed field by field and signed again, most of the time."""
    secret = CREDENTIALS["fulu"]["app_secret"]

    def encode(fields: Any, resign: bool) -> bytes:
        if resign and isinstance(fields, dict):
            fields = {key: value for key, value in fields.items() if key != "sign"}
            with contextlib.suppress(TypeError):  # orjson, which signs, refuses integers past 64 bits
                fields["sign"] = fulu.sign(fields, secret)
        return json_text(fields, ascii_only=False).encode()

    return st.builds(encode, tree_mutant("fulu", json_seeds("fulu", "callback")), st.integers(0, 3).map(bool))


def bodies(protocol: str, kind: str) -> st.SearchStrategy[bytes]:
    """Random bytes, byte-mutated seeds and field-mutated seeds, the last most often."""
    random_bytes = st.binary(max_size=300) | mutated(seeds(protocol, kind))
    if kind == "callback":
        fields = fulu_callbacks() if protocol == "fulu" else form_mutant(protocol)
    elif protocol == "ofpay":
        fields = xml_mutant() | ofpay_documents()
    else:
        fields = json_mutants(protocol, kind) | generated_json(protocol)
    return random_bytes | fields | fields


def generated_json(protocol: str) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda fields, ascii_only: json_text(fields, ascii_only).encode(),
        st.dictionaries(st.sampled_from(KEYS[protocol]), json_values(protocol), max_size=8),
        st.booleans(),
    )


@st.composite
def ofpay_documents(draw: st.DrawFn) -> bytes:
    """`orderinfo` documents with odd children, entities and declarations, in odd charsets."""
    names = st.sampled_from(KEYS["ofpay"]) | st.from_regex(r"[a-z]{1,6}", fullmatch=True)
    content = texts.map(lambda text: text.replace("<", "&lt;")) | st.sampled_from(TOKENS).map(
        lambda token: token.decode("utf-8", errors="replace")
    )
    children = draw(st.lists(st.tuples(names, content), max_size=8))
    inner = "".join(f"<{name}>{text}</{name}>" for name, text in children)
    root = draw(st.sampled_from(("orderinfo", "orderinfo", "userinfo", "")))
    document = f"<{root}>{inner}</{root}>" if root else inner
    declaration = draw(st.sampled_from(("", '<?xml version="1.0" encoding="GB2312"?>\n', "<?xml ")))
    charset = draw(st.sampled_from(("gb18030", "gb18030", "utf-8", "utf-16")))
    return (declaration + document).encode(charset, errors="replace")


statuses = (
    st.just(200)
    | st.just(200)
    | st.sampled_from((201, 204, 301, 400, 404, 429, 500, 503))
    | st.integers(100, 599)
)
headers: st.SearchStrategy[dict[str, str]] = st.just({}) | st.dictionaries(
    st.sampled_from(("Retry-After", "retry-after", "Content-Type", "X-Other")) | st.text(max_size=8),
    st.sampled_from(("1", "0", "-1", "1e9", "nan", "inf", "１０", "1_0", "Wed, 21 Oct 2015 07:28:00 GMT", ""))
    | st.text(max_size=12),
    max_size=3,
)
content_types = st.sampled_from(
    (
        "application/json",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=GBK",
        "text/xml; charset=GB2312",
        "",
    )
) | st.text(max_size=20)


def replies(protocol: str) -> st.SearchStrategy[HttpReply]:
    return st.builds(
        lambda status, headers, body: HttpReply(status=status, headers=headers, body=body),
        statuses,
        headers,
        bodies(protocol, "reply"),
    )


def callbacks(protocol: str) -> st.SearchStrategy[InboundCallback]:
    return st.builds(
        lambda method, content_type, body: InboundCallback(
            method=method, query={}, content_type=content_type, body=body
        ),
        st.sampled_from(("POST", "GET")),
        content_types,
        bodies(protocol, "callback"),
    )


order_ids = (
    st.just(ORDER_ID)
    | st.just(ORDER_ID)
    | st.sampled_from(("G1", "A" * 32))
    | st.text(min_size=1, max_size=34)
)


# The verdicts


def check_reply(answer: object, upstream_order_id: str) -> None:
    """`answer` is a well-typed verdict about `upstream_order_id`."""
    assert isinstance(answer, SupplierReply)
    assert answer.upstream_order_id == upstream_order_id
    assert isinstance(answer.verdict, Verdict)
    for text in (answer.code, answer.message, answer.supplier_order_id):
        assert text is None or isinstance(text, str)
    for cents in (answer.cost_cents, answer.delivered_cents):
        assert cents is None or (type(cents) is int and cents >= 0)
    wait = answer.retry_after_seconds
    assert wait is None or (isinstance(wait, float) and math.isfinite(wait) and wait >= 0)


def check_submit(protocol: str, reply: HttpReply, upstream_order_id: str = ORDER_ID) -> None:
    check_reply(adapter(protocol).parse_submit(upstream_order_id, reply), upstream_order_id)


def check_query(protocol: str, reply: HttpReply, upstream_order_ids: Sequence[str] = (ORDER_ID,)) -> None:
    answers = adapter(protocol).parse_query(upstream_order_ids, reply)
    assert list(answers) == list(upstream_order_ids)
    for upstream_order_id, answer in answers.items():
        check_reply(answer, upstream_order_id)


def check_callback(protocol: str, callback: InboundCallback) -> None:
    try:
        answer = adapter(protocol).parse_callback(callback)
    except REFUSALS:
        return
    assert isinstance(answer, SupplierReply)
    assert answer.upstream_order_id
    check_reply(answer, answer.upstream_order_id)
    assert isinstance(adapter(protocol).acknowledge(), HttpResponse)


def reply(body: bytes, status: int = 200, **headers: str) -> HttpReply:
    return HttpReply(status=status, headers=headers, body=body)


def post(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> InboundCallback:
    return InboundCallback(method="POST", query={}, content_type=content_type, body=body)


# fulu


# Found by the fuzz: a code string str.isdigit() takes but int() refuses, and one of 5000 digits,
# past int()'s limit; both raised ValueError out of parse_submit and parse_query.
FULU_SUPERSCRIPT_CODE: Final = reply('{"code":"²","message":"","result":"","sign":""}'.encode())
FULU_LONG_CODE: Final = reply(b'{"code":"' + b"9" * 5000 + b'","message":"","result":"","sign":""}')


@FUZZ
@given(reply=replies("fulu"), upstream_order_id=order_ids)
@example(reply=FULU_SUPERSCRIPT_CODE, upstream_order_id=ORDER_ID)
@example(reply=FULU_LONG_CODE, upstream_order_id=ORDER_ID)
def test_fulu_submit(reply: HttpReply, upstream_order_id: str) -> None:
    check_submit("fulu", reply, upstream_order_id)


@FUZZ
@given(reply=replies("fulu"), upstream_order_id=order_ids)
@example(reply=FULU_SUPERSCRIPT_CODE, upstream_order_id=ORDER_ID)
@example(reply=FULU_LONG_CODE, upstream_order_id=ORDER_ID)
def test_fulu_query(reply: HttpReply, upstream_order_id: str) -> None:
    check_query("fulu", reply, [upstream_order_id])


@FUZZ
@given(callback=callbacks("fulu"))
# A lone surrogate: the standard parser (which the repeated-key check needs) takes it, but it has
# no UTF-8 form to verify, so it must be malformed, not a crash in the signing serializer.
@example(callback=post(b'{"customer_order_no":"G1","order_status":"success","sign":"\\ud800"}'))
@example(callback=post(b'{"customer_order_no":"\\ud800","order_status":"success","sign":"0"}'))
def test_fulu_callback(callback: InboundCallback) -> None:
    check_callback("fulu", callback)


# juhe


@FUZZ
@given(reply=replies("juhe"), upstream_order_id=order_ids)
def test_juhe_submit(reply: HttpReply, upstream_order_id: str) -> None:
    check_submit("juhe", reply, upstream_order_id)


@FUZZ
@given(reply=replies("juhe"), upstream_order_id=order_ids)
def test_juhe_query(reply: HttpReply, upstream_order_id: str) -> None:
    check_query("juhe", reply, [upstream_order_id])


@FUZZ
@given(callback=callbacks("juhe"))
def test_juhe_callback(callback: InboundCallback) -> None:
    check_callback("juhe", callback)


# ofpay


@FUZZ
@given(reply=replies("ofpay"), upstream_order_id=order_ids)
def test_ofpay_submit(reply: HttpReply, upstream_order_id: str) -> None:
    check_submit("ofpay", reply, upstream_order_id)


@FUZZ
@given(reply=replies("ofpay"), upstream_order_id=order_ids)
def test_ofpay_query(reply: HttpReply, upstream_order_id: str) -> None:
    check_query("ofpay", reply, [upstream_order_id])


@FUZZ
@given(callback=callbacks("ofpay"))
def test_ofpay_callback(callback: InboundCallback) -> None:
    check_callback("ofpay", callback)


# dayuanren


@FUZZ
@given(reply=replies("dayuanren"), upstream_order_id=order_ids)
def test_dayuanren_submit(reply: HttpReply, upstream_order_id: str) -> None:
    check_submit("dayuanren", reply, upstream_order_id)


@FUZZ
@given(
    reply=replies("dayuanren"),
    upstream_order_ids=st.lists(
        st.sampled_from(QUERY_IDS) | st.text(min_size=1, max_size=6).filter(lambda s: "," not in s),
        min_size=1,
        max_size=4,
        unique=True,
    ),
)
def test_dayuanren_query(reply: HttpReply, upstream_order_ids: list[str]) -> None:
    check_query("dayuanren", reply, upstream_order_ids)


@FUZZ
@given(callback=callbacks("dayuanren"))
def test_dayuanren_callback(callback: InboundCallback) -> None:
    check_callback("dayuanren", callback)


@pytest.mark.parametrize("protocol", sorted(CREDENTIALS))
def test_every_seed_is_a_verdict(protocol: str) -> None:
    """The unmutated seeds themselves, through every parser that could receive them."""
    for body in seeds(protocol, "reply"):
        check_submit(protocol, reply(body))
        check_query(protocol, reply(body))
    for body in seeds(protocol, "callback"):
        check_callback(protocol, post(body))


def test_every_registered_protocol_is_fuzzed() -> None:
    """A new protocol fails here until it has credentials, field names and test functions above."""
    assert set(CREDENTIALS) == set(ADAPTERS) == set(KEYS)
    for protocol in ADAPTERS:
        for parser in ("submit", "query", "callback"):
            assert callable(globals().get(f"test_{protocol}_{parser}")), (protocol, parser)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _fulu_deep_echo(depth: int) -> bytes:
    result = f'{{"order_state":"success","customer_order_no":{_deep(depth)}}}'
    signature = fulu.sign_text(result, CREDENTIALS["fulu"]["app_secret"])
    return json.dumps({"code": 0, "message": "", "result": result, "sign": signature}).encode()


DEEP_ECHOES: Final[Mapping[str, Callable[[int], bytes]]] = {
    "fulu": _fulu_deep_echo,
    "juhe": lambda depth: (
        f'{{"error_code":0,"result":{{"game_state":"1","uorderid":{_deep(depth)}}}}}'.encode()
    ),
    "dayuanren": lambda depth: f'{{"errno":0,"data":{{"out_trade_num":{_deep(depth)}}}}}'.encode(),
    "ofpay": lambda depth: (
        "<orderinfo><retcode>1</retcode><sporder_id>"
        + "<a>" * depth
        + "</a>" * depth
        + "</sporder_id></orderinfo>"
    ).encode(),
}
"""An accepted reply about an order id nested deeper than `repr` can quote (JSON parsers take 1024 levels)."""


@pytest.mark.parametrize("protocol", sorted(DEEP_ECHOES))
@pytest.mark.parametrize("depth", [10, 1000])
def test_an_echo_nested_too_deep_to_quote_is_unknown_not_a_crash(protocol: str, depth: int) -> None:
    answer = adapter(protocol).parse_submit(ORDER_ID, reply(DEEP_ECHOES[protocol](depth)))
    check_reply(answer, ORDER_ID)
    assert answer.verdict is Verdict.UNKNOWN
    assert (answer.message or "").startswith("reply is about order ")


def test_a_partial_entry_nested_too_deep_to_quote_is_unknown_not_a_crash() -> None:
    entry = f'{{"out_trade_num":"{ORDER_ID}","state":3,"charge_amount":{_deep(1000)}}}'
    body = f'{{"errno":0,"errmsg":"ok","data":[{entry}]}}'.encode()
    answer = adapter("dayuanren").parse_query([ORDER_ID], reply(body))[ORDER_ID]
    assert answer.verdict is Verdict.UNKNOWN
