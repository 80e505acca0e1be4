"""Retry-After as suppliers send it: only a plain number of seconds counts, and never past the clamp."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.interface import HttpReply, Verdict
from adapters.transport import MAX_RETRY_AFTER_SECONDS, http_level_reply, retry_after_seconds


@given(st.text())
def test_any_text_reads_as_none_or_a_wait_within_the_clamp(value: str) -> None:
    seconds = retry_after_seconds({"Retry-After": value})
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER_SECONDS


@given(st.binary())
def test_any_bytes_read_as_none_or_a_wait_within_the_clamp(value: bytes) -> None:
    # Typed as text, but a header map built from raw bytes must not make it raise either.
    seconds = retry_after_seconds({"Retry-After": value})  # type: ignore[dict-item]
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER_SECONDS


@given(st.integers(min_value=0, max_value=10**400))
def test_whole_seconds_are_taken_as_asked_up_to_the_clamp(seconds: int) -> None:
    assert retry_after_seconds({"Retry-After": str(seconds)}) == min(seconds, MAX_RETRY_AFTER_SECONDS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 7\t", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("300", 300.0),
        ("31536000", MAX_RETRY_AFTER_SECONDS),  # a year
        ("9" * 400, MAX_RETRY_AFTER_SECONDS),  # beyond any float
        ("1e300", None),
        ("1E3", None),
        ("inf", None),
        ("Infinity", None),
        ("nan", None),
        ("-1", None),
        ("+5", None),
        ("1_000", None),
        ("٣", None),  # a non-ASCII digit that float() would read as 3
        ("5 s", None),
        ("", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # the HTTP-date form needs a clock: ignored
        ("\udcff", None),  # a byte that was not UTF-8, as a surrogate escape
    ],
)
def test_retry_after_values(value: str, expected: float | None) -> None:
    assert retry_after_seconds({"Retry-After": value}) == expected


def test_the_header_name_is_case_insensitive_and_bytes_must_be_ascii() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"Retry-After": b"4"}) == 4.0  # type: ignore[dict-item]
    assert retry_after_seconds({"Retry-After": "\xff4".encode("latin-1")}) is None  # type: ignore[dict-item]
    assert retry_after_seconds({}) is None


def test_a_throttled_reply_carries_the_clamped_wait() -> None:
    reply = http_level_reply(
        "G1", HttpReply(status=429, headers={"Retry-After": "31536000"}, body=b""), "submit"
    )
    assert reply is not None
    assert (reply.verdict, reply.retry_after_seconds) == (Verdict.THROTTLED, MAX_RETRY_AFTER_SECONDS)
