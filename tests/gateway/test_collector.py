"""The collector settles once the gateway serves: start-up's objects frozen, young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.collector import YOUNG_THRESHOLD, settle_after_start


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored")
def test_settling_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    survivor = [object() for _ in range(10)]  # a container the collector tracks, alive now

    settle_after_start()

    assert gc.get_freeze_count() > 0
    assert not any(obj is survivor for obj in gc.get_objects())  # frozen: no collection walks it
    assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
