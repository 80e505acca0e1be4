"""Reading supplier replies: a JSON body's outer object, unreadable bodies, and the `unknown` answer.

A reply that cannot be read says nothing about the order, so it becomes `unknown`, never an error.
"""

from __future__ import annotations

import orjson

from adapters.excerpt import excerpt
from adapters.interface import BalanceReply, HttpReply, SupplierReply, Verdict


class Unreadable(Exception):
    """A reply whose bytes do not form the protocol's envelope; the message says what is wrong."""


def json_object(body: bytes) -> dict[str, object]:
    """`body` as a UTF-8 JSON object, or `Unreadable`."""
    try:
        reply = orjson.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise Unreadable("not UTF-8") from error
    except (ValueError, RecursionError) as error:
        raise Unreadable("not JSON") from error
    if not isinstance(reply, dict):
        raise Unreadable("not a JSON object")
    return reply


def reading_problem(reply: HttpReply, problem: object) -> str:
    """Why `reply` could not be read, with its status and a bounded quote of its body."""
    return f"HTTP {reply.status}, {problem}: {excerpt(reply.body)}"


def unknown_reply(upstream_order_id: str, message: str | None, code: str | None = None) -> SupplierReply:
    return SupplierReply(
        upstream_order_id=upstream_order_id, verdict=Verdict.UNKNOWN, code=code, message=message
    )


def unknown_balance(reply: HttpReply, problem: object, code: str | None = None) -> BalanceReply:
    """A balance reply that says nothing readable about the balance, and why."""
    return BalanceReply(balance_cents=None, code=code, message=reading_problem(reply, problem))


def http_level_balance(reply: HttpReply) -> BalanceReply | None:
    """The balance reply when the HTTP status alone makes it unknown (anything but 200); else None."""
    if reply.status != 200:
        return unknown_balance(reply, "not a balance reply")
    return None


def quoted(value: object) -> str:
    """`repr(value)` for a message; a supplier can nest JSON or XML deeper than `repr` can recurse."""
    try:
        return repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deep to quote"


def optional_text(value: object) -> str | None:
    """A string field of a parsed reply; anything else (absent, a number, a nested object) is None."""
    return value if isinstance(value, str) else None
