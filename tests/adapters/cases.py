"""Each protocol's fixture cases for the adapter tests: its cases.toml and the raw .http messages it names.

What an adapter must make of a fixture stays in that protocol's cases.toml; this module only reads it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from adapters.excerpt import excerpt
from adapters.interface import (
    BadSignature,
    HttpReply,
    InboundCallback,
    MalformedMessage,
    SupplierAdapter,
    SupplierReply,
    Verdict,
)

ROOT: Final = Path(__file__).parent.parent / "fixtures"
SECTIONS: Final = ("submit", "query", "callback")
RAISES: Final[Mapping[str, type[Exception]]] = {
    "BadSignature": BadSignature,
    "MalformedMessage": MalformedMessage,
}
FIELDS: Final = ("code", "supplier_order_id", "cost_cents", "delivered_cents", "retry_after_seconds")
"""The reply fields a case states; a field it leaves out must be None."""


class Fixtures:
    """One protocol's fixture directory and the cases its cases.toml lists.

    `exact_messages`: a case without `message` (and without `quotes_body`) expects no message at
    all, rather than leaving the message unchecked.
    """

    def __init__(self, protocol: str, *, exact_messages: bool = False) -> None:
        self.directory = ROOT / protocol
        self.cases: Mapping[str, Any] = tomllib.loads(
            (self.directory / "cases.toml").read_text(encoding="utf-8")
        )
        self.order_id: str = self.cases["upstream_order_id"]
        self.exact_messages = exact_messages

    def names(self, section: str) -> list[str]:
        """The fixtures of one section, sorted, for `pytest.mark.parametrize`."""
        return sorted(self.cases[section])

    def listed(self) -> set[str]:
        return {name for section in SECTIONS for name in self.cases[section]}

    def files(self) -> set[str]:
        return {path.name for path in self.directory.glob("*.http")}

    def load(self, name: str) -> tuple[str, dict[str, str], bytes]:
        """A fixture file: a raw HTTP message with `\\n` line ends, its body exactly the rest."""
        head, _, body = (self.directory / name).read_bytes().partition(b"\n\n")
        first, *lines = head.decode().split("\n")
        headers = dict(line.split(": ", 1) for line in lines)
        return first, headers, body

    def reply(self, name: str) -> HttpReply:
        status_line, headers, body = self.load(name)
        return HttpReply(status=int(status_line.split()[1]), headers=headers, body=body)

    def callback(self, name: str) -> InboundCallback:
        request_line, headers, body = self.load(name)
        method, _path, _version = request_line.split()
        return InboundCallback(method=method, query={}, content_type=headers["Content-Type"], body=body)

    def check(
        self,
        reply: SupplierReply,
        case: Mapping[str, Any],
        body: bytes,
        upstream_order_id: str | None = None,
    ) -> None:
        """`reply` is what `case` says, about `upstream_order_id` (by default the cases' order)."""
        assert reply.upstream_order_id == (upstream_order_id or self.order_id)
        assert reply.verdict is Verdict(case["verdict"])
        for key in FIELDS:
            assert getattr(reply, key) == case.get(key), key
        if "message" in case:
            assert reply.message == case["message"]
        elif self.exact_messages and not case.get("quotes_body"):
            assert reply.message is None
        if case.get("quotes_body"):
            assert reply.message is not None
            assert excerpt(body) in reply.message

    def check_submit(self, adapter: SupplierAdapter, name: str) -> None:
        reply = self.reply(name)
        self.check(adapter.parse_submit(self.order_id, reply), self.cases["submit"][name], reply.body)

    def check_query(self, adapter: SupplierAdapter, name: str) -> None:
        """A query fixture of a protocol that asks about one order at a time."""
        reply = self.reply(name)
        answers = adapter.parse_query([self.order_id], reply)
        assert list(answers) == [self.order_id]
        self.check(answers[self.order_id], self.cases["query"][name], reply.body)

    def check_callback(self, adapter: SupplierAdapter, name: str) -> None:
        callback = self.callback(name)
        case = self.cases["callback"][name]
        if "raises" in case:
            with pytest.raises(RAISES[case["raises"]]):
                adapter.parse_callback(callback)
        else:
            self.check(adapter.parse_callback(callback), case, callback.body)
