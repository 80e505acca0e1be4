"""The remembered uid -> order key pairs of the Redis store: bounded, oldest out first."""

from __future__ import annotations

import pytest

from gateway.store.addresses import OrderAddresses


def test_a_confirmed_address_is_found_and_a_forgotten_one_is_not() -> None:
    addresses = OrderAddresses()
    addresses.confirm("GW1", b"{gw:1:2}:o:k1")

    assert addresses.get("GW1") == b"{gw:1:2}:o:k1"
    assert addresses.get("GW2") is None
    addresses.forget("GW1")
    addresses.forget("GW1")  # twice is harmless
    assert addresses.get("GW1") is None


def test_beyond_capacity_the_oldest_address_goes_first() -> None:
    addresses = OrderAddresses(capacity=3)
    for n in range(5):
        addresses.confirm(f"GW{n}", f"k{n}".encode())

    assert len(addresses) == 3
    assert [addresses.get(f"GW{n}") for n in range(5)] == [None, None, b"k2", b"k3", b"k4"]


def test_confirming_again_keeps_the_first_place_and_the_size() -> None:
    addresses = OrderAddresses(capacity=2)
    addresses.confirm("GW1", b"k1")
    addresses.confirm("GW2", b"k2")
    addresses.confirm("GW1", b"k1")
    addresses.confirm("GW3", b"k3")

    assert len(addresses) == 2
    assert addresses.get("GW1") is None  # still the oldest: a repeat does not make it young
    assert addresses.get("GW3") == b"k3"


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OrderAddresses(capacity=0)
