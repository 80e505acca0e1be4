"""Simulated suppliers: real aiohttp servers speaking each protocol from the supplier's side.

For the demo, tests and benchmarks only; the gateway's order path never imports this package.
"""

from gateway.simulator.engine import SIMULATOR, Simulator
from gateway.simulator.ledger import ChargeState, Ledger, LedgerEntry
from gateway.simulator.registry import FRONTS, UnknownSimulator, build_simulator
from gateway.simulator.traffic import LoggedRequest, Operation, RequestLog

__all__ = [
    "FRONTS",
    "SIMULATOR",
    "ChargeState",
    "Ledger",
    "LedgerEntry",
    "LoggedRequest",
    "Operation",
    "RequestLog",
    "Simulator",
    "UnknownSimulator",
    "build_simulator",
]
