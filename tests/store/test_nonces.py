"""The in-process nonce book: one claim per (shop, nonce) while it counts, and no unbounded growth."""

from __future__ import annotations

from gateway.store.nonces import NonceBook
from tests.store.samples import T0


def test_claims_are_per_shop_and_expire() -> None:
    book = NonceBook()
    assert book.claim("shop-a", "n1", T0 + 300, T0)
    assert not book.claim("shop-a", "n1", T0 + 400, T0 + 299)
    assert book.claim("shop-b", "n1", T0 + 300, T0)
    assert book.claim("shop-a", "n1", T0 + 600, T0 + 300)


def test_expired_nonces_are_forgotten() -> None:
    book = NonceBook()
    for i in range(100):
        book.claim("shop-a", f"n{i}", T0 + 10, T0)
    book.claim("shop-a", "n0", T0 + 30, T0 + 20)  # claimed again after expiry
    book.claim("shop-a", "later", T0 + 400, T0 + 25)
    assert len(book) == 2
