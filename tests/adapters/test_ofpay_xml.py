"""ofpay's XML reading against the xmltodict reading it replaced: the same children, problems and replies.

`ofpay._element` reads with plain Expat and three small handlers instead of xmltodict's; its
answer must be exactly what `xmltodict.parse(text, disable_entities=True, xml_attribs=False)` gave
(`_reference` below is the old function, kept here only): the same children (key order included,
since messages quote them), the same problems, and so the same replies. The pinned cases run
without xmltodict; the differential tests, when it is installed, run over every ofpay fixture, the
fuzz bodies and generated XML-ish texts (namespaces, prefixes, nesting, comments, entities).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from xml.parsers.expat import ExpatError

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters import ofpay
from adapters.interface import AdapterSettings, HttpReply, Verdict
from adapters.ofpay import OfpayAdapter
from adapters.replies import Unreadable
from tests.adapters.test_fuzz import ORDER_ID, TEXTS, bodies

FIXTURES: Final = Path(__file__).parent.parent / "fixtures" / "ofpay"
CREDENTIALS: Final = {"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"}
DIFFERENTIAL: Final = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

WITH_XMLTODICT: Final = pytest.mark.skipif(
    importlib.util.find_spec("xmltodict") is None, reason="the reference reading needs xmltodict"
)

Reading = tuple[str, object]
"""("children", the mapping) or ("unreadable", the problem): what `_element` made of a body."""


def reading(element: Any, body: bytes, root: str = "orderinfo") -> Reading:
    try:
        return "children", element(body, root)
    except Unreadable as problem:
        return "unreadable", str(problem)


def _reference(body: bytes, root: str) -> Mapping[str, object]:
    """The xmltodict reading `ofpay._element` replaced, verbatim."""
    import xmltodict

    if not body.strip():
        raise Unreadable("empty body")
    try:
        text = body.decode("gb18030").lstrip()
    except UnicodeDecodeError as error:
        raise Unreadable("not GB2312") from error
    if re.search(r"<!\s*(?:DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise Unreadable("DTD refused")
    if text.startswith("<?xml"):
        text = text[text.find("?>") + 2 :]
    try:
        document = xmltodict.parse(text, disable_entities=True, xml_attribs=False)
    except (ExpatError, ValueError) as error:
        raise Unreadable("not well-formed XML") from error
    element = document.get(root) if isinstance(document, dict) else None
    if not isinstance(element, dict):
        raise Unreadable(f"no {root}")
    return element


def refused_on_purpose(body: bytes, root: str = "orderinfo") -> bool:
    """The one intended difference: a DTD that got past the text-level guard is now refused too.

    Expat reads a body whose text has a NUL in either of its first two characters as UTF-16,
    whatever encoding it is told, so the guard (which sees GB18030 text with NULs between the
    letters) misses its DOCTYPE. xmltodict then refused only entity declarations; the DOCTYPE and
    entity handlers of `ofpay._document` refuse the whole DTD.
    """
    if reading(ofpay._element, body, root) != ("unreadable", "DTD refused"):
        return False
    if reading(_reference, body, root) == ("unreadable", "DTD refused"):
        return False  # refused before as well: no difference to excuse
    text = body.decode("gb18030").lstrip()
    if text.startswith("<?xml"):
        text = text[text.find("?>") + 2 :]
    return "\x00" in text[:2]


def same_reading(body: bytes, root: str = "orderinfo") -> None:
    if refused_on_purpose(body, root):
        return
    new, old = reading(ofpay._element, body, root), reading(_reference, body, root)
    assert new == old
    assert repr(new) == repr(old)  # key order too: replies quote these values in messages


def same_replies(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ofpay reply made of `body` (submits about two ids, a balance) is what it was before."""
    if refused_on_purpose(body) or refused_on_purpose(body, "userinfo"):
        return
    adapter = OfpayAdapter(
        AdapterSettings(name="ofpay", base_url="http://127.0.0.1:9102/", credentials=CREDENTIALS)
    )
    reply = HttpReply(status=200, headers={}, body=body)
    new = [
        adapter.parse_submit(ORDER_ID, reply),
        adapter.parse_submit("G1", reply),
        adapter.parse_balance(reply),
    ]
    with monkeypatch.context() as patched:
        patched.setattr(ofpay, "_element", _reference)
        old = [
            adapter.parse_submit(ORDER_ID, reply),
            adapter.parse_submit("G1", reply),
            adapter.parse_balance(reply),
        ]
    assert new == old


def gb2312(text: str) -> bytes:
    return text.encode("gb18030")


# Pinned: what xmltodict made of odd texts: namespaces and prefixes (which a namespace-aware
# parser such as ElementTree would rename or refuse), nesting, mixed text, comments, entities.
# Checked against xmltodict itself when it is installed.
PINNED: Final[tuple[tuple[str, Reading], ...]] = (
    ("<orderinfo><retcode>1</retcode></orderinfo>", ("children", {"retcode": "1"})),
    (
        "<orderinfo><retcode> 1 \r\n</retcode><err_msg/></orderinfo>",
        ("children", {"retcode": "1", "err_msg": None}),
    ),
    (
        "<orderinfo><retcode>1</retcode><retcode></retcode><retcode>2</retcode></orderinfo>",
        ("children", {"retcode": ["1", None, "2"]}),
    ),
    (
        "<orderinfo>a<retcode>1</retcode> b <!--c-->c<?pi x?></orderinfo>",
        ("children", {"retcode": "1", "#text": "a b c"}),
    ),
    (
        "<orderinfo><err_msg><![CDATA[ <x> ]]>&amp;&#x4E2D;</err_msg></orderinfo>",
        ("children", {"err_msg": "<x> &中"}),
    ),
    ('<orderinfo xmlns="urn:x"><retcode>1</retcode></orderinfo>', ("children", {"retcode": "1"})),
    ('<orderinfo xmlns:p="urn:p"><p:retcode>1</p:retcode></orderinfo>', ("children", {"p:retcode": "1"})),
    (
        "<orderinfo><p:retcode>1</p:retcode><retcode>2</retcode></orderinfo>",
        ("children", {"p:retcode": "1", "retcode": "2"}),
    ),
    ('<orderinfo p:a="1" a="2"><retcode>1</retcode></orderinfo>', ("children", {"retcode": "1"})),
    ("<orderinfo><xml:retcode>1</xml:retcode></orderinfo>", ("children", {"xml:retcode": "1"})),
    ("<p:orderinfo><retcode>1</retcode></p:orderinfo>", ("unreadable", "no orderinfo")),
    ('<x:orderinfo xmlns:x="u"><retcode>1</retcode></x:orderinfo>', ("unreadable", "no orderinfo")),
    (
        "<orderinfo><sporder_id><a>1</a>x<a/><b>2</b></sporder_id><retcode>1</retcode></orderinfo>",
        ("children", {"sporder_id": {"a": ["1", None], "b": "2", "#text": "x"}, "retcode": "1"}),
    ),
    ("<orderinfo><a><b><c>deep</c></b></a></orderinfo>", ("children", {"a": {"b": {"c": "deep"}}})),
    ("<orderinfo>text only</orderinfo>", ("unreadable", "no orderinfo")),
    ("<orderinfo/>", ("unreadable", "no orderinfo")),
    ("<userinfo><retcode>1</retcode></userinfo>", ("unreadable", "no orderinfo")),
    ("<orderinfo><retcode>1</retcode></orderinfo><x/>", ("unreadable", "not well-formed XML")),
    ("<orderinfo><retcode>&bogus;</retcode></orderinfo>", ("unreadable", "not well-formed XML")),
    ("<orderinfo><retcode>&#0;</retcode></orderinfo>", ("unreadable", "not well-formed XML")),
    ("<orderinfo><:a>1</:a></orderinfo>", ("children", {":a": "1"})),
    ("<orderinfo><a:b:c>1</a:b:c></orderinfo>", ("children", {"a:b:c": "1"})),
    ('<orderinfo xmlns:p=""><retcode>1</retcode></orderinfo>', ("children", {"retcode": "1"})),
    (
        '<?xml version="1.0" encoding="GB2312"?>\n<orderinfo><a>充值</a></orderinfo>',
        ("children", {"a": "充值"}),
    ),
    (
        '<?xml version="1.0"?><orderinfo><?xml version="1.0"?><a/></orderinfo>',
        ("unreadable", "not well-formed XML"),
    ),
    ("\ufeff<orderinfo><a>1</a></orderinfo>", ("children", {"a": "1"})),
    ("<!DOCTYPE orderinfo><orderinfo><a>1</a></orderinfo>", ("unreadable", "DTD refused")),
    ('<orderinfo><a>1</a></orderinfo><! entity x "y">', ("unreadable", "DTD refused")),
    ("", ("unreadable", "empty body")),
)


@pytest.mark.parametrize(("text", "expected"), PINNED)
def test_pinned_readings(text: str, expected: Reading) -> None:
    got = reading(ofpay._element, gb2312(text))
    assert got == expected
    assert repr(got) == repr(expected)


@pytest.mark.parametrize(("text", "expected"), PINNED)
@WITH_XMLTODICT
def test_pinned_readings_are_xmltodicts(text: str, expected: Reading) -> None:
    assert reading(_reference, gb2312(text)) == expected


@WITH_XMLTODICT
@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.http")), ids=lambda path: path.name)
def test_every_fixture_reads_as_before(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = path.read_bytes().partition(b"\n\n")[2]
    for root in ("orderinfo", "userinfo"):
        same_reading(body, root)
    same_replies(body, monkeypatch)


@WITH_XMLTODICT
@pytest.mark.parametrize("code", ["1", "1001", "1005", "9999", "abc", ""])
def test_refusals_read_as_before(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    document = f"<orderinfo><err_msg>错误</err_msg><retcode>{code}</retcode></orderinfo>"
    body = gb2312(f'<?xml version="1.0" encoding="GB2312"?>\n{document}')
    same_reading(body)
    same_replies(body, monkeypatch)


# Generated XML-ish texts: well-formed to plain Expat by construction (namespaces, prefixes,
# attributes, nesting, comments, CDATA, character references, odd space), then, one time in four,
# broken by a token no XML may hold or by something around the root.

plain_names = st.sampled_from(
    (
        "orderinfo",
        "userinfo",
        "retcode",
        "sporder_id",
        "game_state",
        "err_msg",
        "ordercash",
        "ret_leftcredit",
        "orderid",
        "a",
    )
)
odd_names = st.sampled_from(("p:retcode", "xml:lang", "x:orderinfo", ":a", "a:b:c", "xmlns"))
names = st.one_of(plain_names, plain_names, plain_names, odd_names)
attributes = st.lists(
    st.sampled_from(
        (
            ("a", "1"),
            ("b", "&amp;"),
            ("xmlns", "urn:x"),
            ("xmlns", ""),
            ("xmlns:p", "urn:p"),
            ("xmlns:p", ""),  # undeclaring a prefix: an error with namespaces, fine without
            ("xmlns:x", "urn:p"),
            ("p:a", "1"),
            ("x:a", "2"),
            ("xml:lang", "zh"),
        )
    ),
    max_size=3,
    unique_by=lambda attribute: attribute[0],
).map(lambda pairs: "".join(f' {name}="{value}"' for name, value in pairs))
attributes = st.one_of(st.just(""), st.just(""), attributes)
leaf_texts = st.sampled_from(TEXTS).map(
    lambda text: text.replace("<", "&lt;").replace("\x00", "")
) | st.sampled_from(
    (
        " ",
        "\r\n",
        "\t1\n",
        "&amp;",
        "&lt;x&gt;",
        "&#x4E2D;",
        "<![CDATA[ <retcode>1</retcode> ]]>",
        "<!-- comment -->",
        "<?pi data?>",
        "充值成功",
        "\u3000",
    )
)
breaking = st.sampled_from(("&#0;", "&bogus;", "]]>", "&", "\x00", "<", "<x:", "</a>", "<a a='1' a='2'/>"))


def element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda name, attrs, inner, empty: (
            f"<{name}{attrs}/>" if empty else f"<{name}{attrs}>{inner}</{name}>"
        ),
        names,
        attributes,
        st.lists(children, max_size=4).map("".join),
        st.integers(0, 5).map(lambda n: n == 5),
    )


content = st.recursive(leaf_texts, element, max_leaves=12)


@st.composite
def xmlish(draw: st.DrawFn) -> bytes:
    """A document with an ofpay-like root (or none), odd children and odd things around it."""
    root = draw(st.sampled_from(("orderinfo", "orderinfo", "orderinfo", "userinfo", "p:orderinfo", "")))
    inner = draw(st.lists(content, max_size=6).map("".join))
    document = f"<{root}{draw(attributes)}>{inner}</{root}>" if root else inner
    if draw(st.integers(0, 3)) == 3:
        at = draw(st.integers(0, len(document)))
        document = document[:at] + draw(breaking) + document[at:]
    before = draw(
        st.sampled_from(("", '<?xml version="1.0" encoding="GB2312"?>\n', " \n", "<!--c-->", "\ufeff"))
    )
    after = draw(st.sampled_from(("", "", "", "\n", "<!--c-->", "<?pi?>", "<x/>", "junk", "<?xml ")))
    charset = draw(st.sampled_from(("gb18030", "gb18030", "gb18030", "utf-8")))
    return (before + document + after).encode(charset, errors="replace")


DEEP: Final = (
    b"<orderinfo><retcode>1</retcode><sporder_id>"
    + b"<a>" * 3000
    + b"x"
    + b"</a>" * 3000
    + b"</sporder_id></orderinfo>"
)


@WITH_XMLTODICT
@DIFFERENTIAL
@given(body=xmlish())
@example(
    body=gb2312(
        '<orderinfo xmlns="urn:x"><retcode>1</retcode><sporder_id>' + ORDER_ID + "</sporder_id></orderinfo>"
    )
)
def test_generated_texts_read_as_before(body: bytes) -> None:
    same_reading(body)
    same_reading(body, "userinfo")


@WITH_XMLTODICT
@DIFFERENTIAL
@given(body=bodies("ofpay", "reply"))
def test_fuzz_bodies_read_as_before(body: bytes) -> None:
    same_reading(body)
    same_reading(body, "userinfo")


@WITH_XMLTODICT
@DIFFERENTIAL
@given(body=xmlish() | bodies("ofpay", "reply"))
def test_generated_replies_are_as_before(body: bytes) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        same_replies(body, monkeypatch)


def test_nesting_to_any_depth_is_read_without_recursion() -> None:
    children = ofpay._element(DEEP, "orderinfo")
    assert children["retcode"] == "1"
    depth, value = 0, children["sporder_id"]
    while isinstance(value, dict):
        depth, value = depth + 1, value["a"]
    assert (depth, value) == (3000, "x")


def test_an_echo_nested_too_deep_to_quote_is_still_a_reply() -> None:
    adapter = OfpayAdapter(
        AdapterSettings(name="ofpay", base_url="http://127.0.0.1:9102/", credentials=CREDENTIALS)
    )
    reply = adapter.parse_submit(ORDER_ID, HttpReply(status=200, headers={}, body=DEEP))
    assert (reply.verdict, reply.code) == (Verdict.UNKNOWN, "1")


@WITH_XMLTODICT
@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<orderinfo><retcode>1</retcode></orderinfo>", ("children", {"retcode": "1"})),
        ("<!DOCTYPE orderinfo><orderinfo><retcode>1</retcode></orderinfo>", ("unreadable", "DTD refused")),
        (
            '<!DOCTYPE orderinfo SYSTEM "http://example.invalid/x.dtd"><orderinfo><retcode>1</retcode></orderinfo>',
            ("unreadable", "DTD refused"),
        ),
        (
            '<!DOCTYPE orderinfo [<!ENTITY a "x">]><orderinfo><retcode>&a;</retcode></orderinfo>',
            ("unreadable", "DTD refused"),
        ),
    ],
)
def test_a_dtd_in_utf16_that_the_guard_cannot_see_is_refused_by_the_parser(
    text: str, expected: Reading, encoding: str
) -> None:
    """Without a BOM, UTF-16 gets past the guard (see `refused_on_purpose`); the parser refuses its DTD.

    xmltodict read the first three as `{"retcode": "1"}`, DOCTYPE and all, and the fourth as not
    well-formed; a UTF-16 reply without a DTD reads as it always did.
    """
    body = text.encode(encoding)
    assert reading(ofpay._element, body) == expected
    if expected[0] == "unreadable":
        assert refused_on_purpose(body)
    else:
        same_reading(body)


@pytest.mark.parametrize(
    "text",
    [
        '<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        "<!DOCTYPE a><a/>",
        '<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
    ],
)
def test_the_parser_refuses_a_dtd_even_past_the_guard(text: str) -> None:
    """The second line: `_element` refuses DTDs before parsing, and `_document` reads none either."""
    with pytest.raises(Unreadable, match="DTD refused"):
        ofpay._document(text)
