"""Order uids: unique, sortable by time, and short enough for every protocol's id field."""

from __future__ import annotations

import random

from gateway.identifiers import new_order_uid
from gateway.order import upstream_order_id


def test_uids_sort_by_time_and_fit_every_protocol() -> None:
    rng = random.Random(1)
    uids = [new_order_uid(1_795_000_000.0 + i / 1000, rng) for i in range(2000)]
    assert uids == sorted(uids)
    assert len(set(uids)) == len(uids)
    for uid in uids[:50]:
        upstream = upstream_order_id(uid, 99)
        assert upstream.isalnum()
        assert 8 <= len(upstream) <= 32


def test_same_millisecond_uids_differ() -> None:
    rng = random.Random(2)
    assert len({new_order_uid(1_795_000_000.0, rng) for _ in range(1000)}) == 1000
