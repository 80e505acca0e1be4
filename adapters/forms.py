"""Reading `application/x-www-form-urlencoded` data strictly, as the form-speaking protocols must.

A repeated field is refused: which copy the supplier signed cannot be known.
"""

from __future__ import annotations

from urllib.parse import parse_qsl


class RepeatedField(ValueError):
    """A form names one field twice."""


def read_fields(
    text: str, *, max_fields: int, encoding: str = "utf-8", strict: bool = True
) -> dict[str, str]:
    """The fields of `text`, percent-decoded from `encoding` bytes; `ValueError` when it is no form.

    Undecodable bytes and more than `max_fields` fields are refused, and so, when `strict`, are
    fields without `=` and empty ones (`a=1&&b=2`); a repeated field is `RepeatedField`.
    """
    pairs = parse_qsl(
        text,
        keep_blank_values=True,
        strict_parsing=strict,
        encoding=encoding,
        errors="strict",
        max_num_fields=max_fields,
    )
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise RepeatedField("a field is repeated")
    return fields
