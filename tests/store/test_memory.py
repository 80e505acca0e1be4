"""What only the memory store promises: nonces it no longer needs do not pile up."""

from __future__ import annotations

from gateway.store.memory import MemoryStore
from tests.store.samples import T0


async def test_expired_nonces_are_forgotten() -> None:
    store = MemoryStore()
    for i in range(100):
        await store.claim_nonce("shop-a", f"n{i}", expires_at=T0 + 10, now=T0)
    await store.claim_nonce("shop-a", "n0", expires_at=T0 + 30, now=T0 + 20)  # claimed again after expiry

    await store.claim_nonce("shop-a", "later", expires_at=T0 + 400, now=T0 + 25)

    # Private state on purpose: the bound on memory is the promise under test.
    assert set(store._nonces) == {("shop-a", "n0"), ("shop-a", "later")}
    assert len(store._nonce_expiries) == 2
