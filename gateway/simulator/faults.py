"""The faults a simulated supplier injects beyond plain answers, by name, as its records count them.

Names only: the engine decides when each happens, the ledger and request log record it.
"""

from __future__ import annotations

from enum import StrEnum


class Fault(StrEnum):
    """One injected fault; each is a `SimulateConfig` knob drawn per submit."""

    RESET = "reset"  # charged, then the connection reset (RST) without an answer
    CRASH = "crash"  # charged, then every connection reset and new ones refused for a while
    LAG = "lag"  # charged, but queries say "not found" for a while (a lagging replica)
    FORGED_CALLBACK = "forged_callback"  # forged callbacks claiming the opposite result went out too
