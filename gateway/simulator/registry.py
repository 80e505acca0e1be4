"""Simulator fronts by protocol name, and the one way to build a simulated supplier.

The one place a new protocol front is registered; it holds no simulator instances.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType

from gateway.clock import Clock
from gateway.config.model import SimulateConfig
from gateway.simulator.dayuanren import DayuanrenFront
from gateway.simulator.engine import Simulator
from gateway.simulator.front import FrontFactory
from gateway.simulator.fulu import FuluFront
from gateway.simulator.juhe import JuheFront
from gateway.simulator.ofpay import OfpayFront

FRONTS: Mapping[str, FrontFactory] = MappingProxyType(
    {
        "fulu": FuluFront,
        "dayuanren": DayuanrenFront,
        "juhe": JuheFront,
        "ofpay": OfpayFront,
    }
)


class UnknownSimulator(LookupError):
    """A supplier asks to be simulated in a protocol no front speaks."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no simulator for protocol {name!r}; valid: {', '.join(sorted(FRONTS))}")


def front_factory(protocol: str) -> FrontFactory:
    try:
        return FRONTS[protocol]
    except KeyError:
        raise UnknownSimulator(protocol) from None


def build_simulator(
    protocol: str,
    *,
    credentials: Mapping[str, str],
    knobs: SimulateConfig,
    callback_url: str | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    catalog: Mapping[str, int] | None = None,
    callback_attempts: int = 5,
    callback_retry_seconds: float = 0.2,
    callback_timeout_seconds: float = 2.0,
) -> Simulator:
    """A simulated supplier speaking `protocol`; serve its `.app` with aiohttp.

    `callback_url` is where callbacks go for protocols whose requests carry no notify URL (it is
    required for those); `rng` defaults to one seeded from `knobs.seed`.
    """
    front = front_factory(protocol)(credentials)
    if callback_url is None and not front.carries_notify_url:
        raise ValueError(f"a {protocol} simulator needs callback_url: its requests carry no notify URL")
    return Simulator(
        front,
        knobs=knobs,
        callback_url=callback_url,
        clock=clock,
        rng=rng,
        catalog=catalog,
        callback_attempts=callback_attempts,
        callback_retry_seconds=callback_retry_seconds,
        callback_timeout_seconds=callback_timeout_seconds,
    )
