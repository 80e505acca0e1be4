"""Adapters by protocol name: the one place a new protocol is registered."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapters.dayuanren import DayuanrenAdapter
from adapters.fulu import FuluAdapter
from adapters.interface import AdapterFactory
from adapters.juhe import JuheAdapter
from adapters.ofpay import OfpayAdapter

ADAPTERS: Mapping[str, AdapterFactory] = MappingProxyType(
    {
        "fulu": FuluAdapter,
        "dayuanren": DayuanrenAdapter,
        "juhe": JuheAdapter,
        "ofpay": OfpayAdapter,
    }
)


class UnknownProtocol(LookupError):
    """A supplier names a protocol no adapter speaks."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown protocol {name!r}; valid: {', '.join(sorted(ADAPTERS))}")


def adapter_factory(name: str) -> AdapterFactory:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UnknownProtocol(name) from None
