"""The four simulated protocols as the simulator tests use them: credentials and a default product.

Each protocol's own test module names its entry as the `protocol` fixture; cross-protocol tests
parametrize over them.
"""

from __future__ import annotations

from typing import Final

from tests.simulator.conftest import SimulatedProtocol

FULU: Final = SimulatedProtocol(
    name="fulu",
    credentials={"app_key": "demo-app-key", "app_secret": "demo-app-secret"},
    sku="18221081",
    max_cost_cents=4930,
)
JUHE: Final = SimulatedProtocol(
    name="juhe", credentials={"key": "demo-key", "openid": "demo-openid"}, sku="50", max_cost_cents=4930
)
OFPAY: Final = SimulatedProtocol(
    name="ofpay",
    credentials={"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
    sku="140101",
    max_cost_cents=4950,
)
DAYUANREN: Final = SimulatedProtocol(
    name="dayuanren",
    credentials={"userid": "10001", "apikey": "demo-apikey"},
    sku="101",
    max_cost_cents=4930,
)
ALL: Final = (FULU, JUHE, OFPAY, DAYUANREN)
