"""Python's garbage collector set for a long-running server, once it has started.

Every order allocates a few hundred container objects, nearly all gone when it ends; the default
young-generation threshold (700) then runs a collection every few orders, and each older one walks
everything the gateway built at start-up (modules, configuration, tables) again and again. Measured
on `bench/run.py`, that was a sixth to a quarter of the CPU per order. So, once serving:

- what start-up built is frozen (`gc.freeze`): no collection walks it any more;
- the young generation is collected every `YOUNG_THRESHOLD` allocations instead of 700, a pause of
  about a millisecond a few times a second at full load.

Reference counting still frees nearly everything at once; only cycles wait for a collection.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 20_000


def settle_after_start() -> None:
    """Collect once, freeze what survived, and make young collections rarer (call once serving)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
