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


def test_the_book_holds_one_window_of_claims_however_long_it_runs() -> None:
    book = NonceBook()
    rate, window = 200, 300.0
    for i in range(int(4 * window * rate)):
        now = T0 + i / rate
        assert book.claim("shop-a", f"nonce-{i:08d}", now + window, now)
    # Claims still inside the window, plus at most the one second whose expiries are not yet dropped.
    assert window * rate <= len(book) <= (window + 1) * rate
    assert len(book._until) == len(book._seconds) <= window + 2


def test_a_claim_dropped_early_and_made_again_outlives_its_first_expiry() -> None:
    book = NonceBook()
    assert book.claim("shop-a", "n1", T0 + 10, T0)
    book.release("shop-a", "n1", T0 + 10)  # could not be recorded durably
    assert book.claim("shop-a", "n1", T0 + 310, T0 + 5)
    assert book.claim("shop-a", "other", T0 + 320, T0 + 20)  # drops what expired by T0 + 20
    assert not book.claim("shop-a", "n1", T0 + 330, T0 + 30)
    book.release("shop-a", "n1", T0 + 10)  # the first claim's release no longer touches the second
    assert not book.claim("shop-a", "n1", T0 + 330, T0 + 30)


def test_shops_and_nonces_never_run_together() -> None:
    book = NonceBook()
    assert book.claim("ab", "cdefgh12", T0 + 300, T0)
    assert book.claim("a", "bcdefgh12", T0 + 300, T0)
    assert book.claim("abc", "defgh12", T0 + 300, T0)
    assert not book.claim("a", "bcdefgh12", T0 + 300, T0)
