"""What the carrier and province lookup (gateway/numbering.py) costs: once at start-up, then per order.

Start-up is measured in a fresh interpreter (import time and resident memory the data adds); the
per-order figure is µs per `look_up` over numbers spread across every mainland mobile prefix,
after a warm-up, best of a few rounds. Usage:

    .venv/bin/python bench/numbering.py [--lookups 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the gateway package is in the checkout

# Run in a fresh interpreter: what importing the lookup (its data and warm-up) adds on top of the
# value types every gateway loads anyway.
STARTUP = """
import resource, time
import gateway.mobile
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
import gateway.numbering
seconds = time.perf_counter() - started
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def startup() -> tuple[float, float]:
    """Seconds and MiB that importing gateway.numbering (phonenumbers' data) adds to a gateway process."""
    out = subprocess.run(
        [sys.executable, "-c", STARTUP], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    seconds, kib = out.split()
    return float(seconds), int(kib) / 1024


def numbers(count: int, seed: int = 11) -> list[str]:
    """Accounts that pass `mobile_cn` (1[3-9] and nine digits), assigned 号段 and unassigned alike."""
    rng = random.Random(seed)
    return [f"1{rng.randrange(3, 10)}{rng.randrange(10**9):09d}" for _ in range(count)]


def per_lookup_microseconds(accounts: list[str], rounds: int) -> tuple[float, float]:
    from gateway.numbering import look_up

    for account in accounts[:1000]:
        look_up(account)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        for account in accounts:
            look_up(account)
        timings.append((time.perf_counter() - started) / len(accounts) * 1e6)
    return min(timings), sorted(timings)[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lookups", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    seconds, mib = startup()
    print(f"start-up: import {seconds * 1000:.0f} ms, +{mib:.0f} MiB resident (once per process)")
    accounts = numbers(args.lookups)
    best, median = per_lookup_microseconds(accounts, args.rounds)
    print(f"per order: {best:.1f} µs per lookup (median of rounds {median:.1f} µs), {args.lookups} numbers")


if __name__ == "__main__":
    main()
