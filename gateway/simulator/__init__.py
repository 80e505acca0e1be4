"""Simulated suppliers: real aiohttp servers speaking each protocol from the supplier's side.

For the demo, tests and benchmarks only; the gateway's order path never imports this package.
"""

from gateway.simulator.engine import SIMULATOR, Silence, Simulator
from gateway.simulator.faults import Fault
from gateway.simulator.ledger import ChargeState, Ledger, LedgerEntry
from gateway.simulator.listener import Listener, Outage
from gateway.simulator.registry import FRONTS, UnknownSimulator, build_simulator
from gateway.simulator.traffic import LoggedRequest, Operation, RequestLog

__all__ = [
    "FRONTS",
    "SIMULATOR",
    "ChargeState",
    "Fault",
    "Ledger",
    "LedgerEntry",
    "Listener",
    "LoggedRequest",
    "Operation",
    "Outage",
    "RequestLog",
    "Silence",
    "Simulator",
    "UnknownSimulator",
    "build_simulator",
]
