"""`gateway run` with tracemalloc on, for the soak's `--tracemalloc`: SIGUSR1 writes what is allocated now.

Usage: `python bench/traced.py DIR FRAMES -- run -c gateway.yaml`. Each SIGUSR1 writes DIR/N.snap (a
tracemalloc snapshot), DIR/N.json (live gc-tracked objects by type) and then DIR/N.done. The dump
runs on the gateway's event loop thread and stalls it for a moment: a diagnosis tool, not a benchmark.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType


def main() -> int:
    out, frames, separator, *args = sys.argv[1:]
    if separator != "--":
        raise SystemExit("usage: traced.py DIR FRAMES -- GATEWAY_ARGS...")
    directory = Path(out)
    tracemalloc.start(int(frames))
    dumps = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal dumps
        dumps += 1
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
        )
        snapshot.dump(str(directory / f"{dumps}.snap"))
        kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
        (directory / f"{dumps}.json").write_text(json.dumps(kinds))
        (directory / f"{dumps}.done").touch()

    signal.signal(signal.SIGUSR1, dump)
    from gateway.cli import main as gateway_main

    return gateway_main(args)


if __name__ == "__main__":
    sys.exit(main())
