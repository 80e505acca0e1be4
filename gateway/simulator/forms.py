"""Reading `application/x-www-form-urlencoded` text strictly, as the form-speaking suppliers do.

A repeated field is refused: which copy was signed cannot be known. Writing needs no help here
(`urllib.parse.urlencode` writes what the protocols ask for).
"""

from __future__ import annotations

from urllib.parse import parse_qsl


def read_form(text: str, *, encoding: str, max_fields: int) -> dict[str, str]:
    """The fields of `text`, percent-decoded from `encoding` bytes; `ValueError` when it is no form.

    Undecodable bytes, fields without `=`, empty fields (`a=1&&b=2`), repeated fields and more than
    `max_fields` fields are all refused.
    """
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        strict_parsing=True,
        encoding=encoding,
        errors="strict",
        max_num_fields=max_fields,
    )
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a field is repeated")
    return fields
