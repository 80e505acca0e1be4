"""Shop request authentication: signature, time window and nonce replay, with an injected clock."""

from __future__ import annotations

import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import ShopAuthenticator, request_signature
from gateway.clock import ManualClock
from gateway.errors import StoreUnavailable, Unauthenticated
from gateway.store.memory import MemoryStore

SECRET = b"demo-secret"
BODY = b'{"order_id":"A"}'


def headers(
    ts: float, nonce: str = "nonce-0001", body: bytes = BODY, secret: bytes = SECRET, shop: str = "demo"
) -> dict[str, str]:
    stamp = str(int(ts))
    return {
        "X-Shop-Id": shop,
        "X-Timestamp": stamp,
        "X-Nonce": nonce,
        "X-Signature": request_signature(secret, "POST", "/v1/orders", stamp, nonce, body),
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def auth(clock: ManualClock) -> ShopAuthenticator:
    return ShopAuthenticator({"demo": SECRET}, MemoryStore(), clock)


async def expect(
    auth: ShopAuthenticator, hdrs: dict[str, str], what: str, body: bytes = BODY, path: str = "/v1/orders"
) -> None:
    with pytest.raises(Unauthenticated) as info:
        await auth.authenticate("POST", path, hdrs, body)
    assert info.value.message == what


async def test_a_signed_request_passes(auth: ShopAuthenticator, clock: ManualClock) -> None:
    assert await auth.authenticate("POST", "/v1/orders", headers(clock.now()), BODY) == "demo"


def test_signature_matches_the_contract_formula() -> None:
    import hashlib
    import hmac

    expected = hmac.new(
        SECRET, b"POST\n/v1/orders?x=1\n1795000000\nnonce-0001\n" + BODY, hashlib.sha256
    ).hexdigest()
    assert request_signature(SECRET, "POST", "/v1/orders?x=1", "1795000000", "nonce-0001", BODY) == expected


async def test_tampered_body_path_or_method(auth: ShopAuthenticator, clock: ManualClock) -> None:
    await expect(auth, headers(clock.now()), "signature", body=BODY + b" ")
    await expect(auth, headers(clock.now(), nonce="nonce-0002"), "signature", path="/v1/orders?x=1")
    with pytest.raises(Unauthenticated):
        await auth.authenticate("GET", "/v1/orders", headers(clock.now(), nonce="nonce-0003"), BODY)


async def test_wrong_secret_unknown_shop_missing_headers(auth: ShopAuthenticator, clock: ManualClock) -> None:
    await expect(auth, headers(clock.now(), secret=b"other"), "signature")
    await expect(auth, headers(clock.now(), shop="nobody"), "signature")
    await expect(auth, {}, "signature")
    partial = headers(clock.now())
    del partial["X-Timestamp"]
    await expect(auth, partial, "timestamp")


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space!", "ümlaut12"])
async def test_malformed_nonce(auth: ShopAuthenticator, clock: ManualClock, nonce: str) -> None:
    await expect(auth, headers(clock.now(), nonce=nonce), "nonce")


async def test_timestamp_window_is_300_seconds_both_ways(auth: ShopAuthenticator, clock: ManualClock) -> None:
    now = clock.now()
    assert await auth.authenticate("POST", "/v1/orders", headers(now - 300, nonce="nonce-edge-1"), BODY)
    assert await auth.authenticate("POST", "/v1/orders", headers(now + 300, nonce="nonce-edge-2"), BODY)
    await expect(auth, headers(now - 301, nonce="nonce-old-01"), "timestamp")
    await expect(auth, headers(now + 301, nonce="nonce-new-01"), "timestamp")
    await expect(auth, {**headers(now), "X-Timestamp": "12.5"}, "timestamp")


async def test_replayed_nonce_is_refused_until_the_window_passes(
    auth: ShopAuthenticator, clock: ManualClock
) -> None:
    first = headers(clock.now())
    await auth.authenticate("POST", "/v1/orders", first, BODY)
    await expect(auth, first, "nonce")
    clock.advance(299)
    await expect(auth, headers(clock.now(), nonce="nonce-0001"), "nonce")
    clock.advance(2)
    assert (
        await auth.authenticate("POST", "/v1/orders", headers(clock.now(), nonce="nonce-0001"), BODY)
        == "demo"
    )


async def test_a_bad_signature_does_not_burn_the_nonce(auth: ShopAuthenticator, clock: ManualClock) -> None:
    await expect(auth, headers(clock.now(), secret=b"forged"), "signature")
    assert await auth.authenticate("POST", "/v1/orders", headers(clock.now()), BODY) == "demo"


# Header formats: checked before any shop is looked up, so the answers never depend on who exists.


@pytest.mark.parametrize(
    "signature",
    [
        "é" * 64,  # non-ASCII: hmac.compare_digest raises TypeError on such str
        "\udcff" * 64,  # a byte aiohttp could not decode, kept as a lone surrogate
        "A" * 64,  # upper hex: the contract says lower
        "0" * 63,
        "0" * 65,
        "g" * 64,
        " " + "0" * 63,
    ],
)
async def test_a_malformed_signature_is_refused_as_signature(
    auth: ShopAuthenticator, clock: ManualClock, signature: str
) -> None:
    await expect(auth, {**headers(clock.now()), "X-Signature": signature}, "signature")


async def test_a_correct_signature_in_upper_hex_is_refused(
    auth: ShopAuthenticator, clock: ManualClock
) -> None:
    hdrs = headers(clock.now())
    await expect(auth, {**hdrs, "X-Signature": hdrs["X-Signature"].upper()}, "signature")


@pytest.mark.parametrize("shop", ["", "x" * 65, "de mo", "démo", "demo\n"])
async def test_a_malformed_shop_id_is_refused_as_signature(
    auth: ShopAuthenticator, clock: ManualClock, shop: str
) -> None:
    await expect(auth, headers(clock.now(), shop=shop), "signature")


@pytest.mark.parametrize(
    ("override", "what"),
    [
        ({"X-Nonce": "bad nonce"}, "nonce"),
        ({"X-Nonce": ""}, "nonce"),
        ({"X-Timestamp": "soon"}, "timestamp"),
        ({"X-Timestamp": ""}, "timestamp"),
        ({"X-Signature": "é" * 64}, "signature"),
    ],
)
async def test_known_and_unknown_shops_get_the_same_answer(
    auth: ShopAuthenticator, clock: ManualClock, override: dict[str, str], what: str
) -> None:
    for shop in ("demo", "nobody"):
        await expect(auth, {**headers(clock.now(), shop=shop), **override}, what)


async def test_a_well_formed_request_from_an_unknown_shop_fails_as_signature(
    auth: ShopAuthenticator, clock: ManualClock
) -> None:
    # Signed with a real shop's secret under another id: nothing may pass for a shop that does not exist.
    await expect(auth, headers(clock.now(), shop="nobody"), "signature")


async def test_an_unknown_shop_costs_the_same_hmac_as_a_known_one(
    auth: ShopAuthenticator, clock: ManualClock
) -> None:
    # Skipping the HMAC for unknown shops answers them in microseconds instead of the time it takes
    # to hash the body: a timing oracle for which shop ids exist. With a 4 MiB body the HMAC is
    # milliseconds, three orders of magnitude above everything else, so noise cannot hide its absence.
    body = b"x" * (4 * 1024 * 1024)

    async def fastest(shop: str) -> float:
        hdrs = {**headers(clock.now(), body=body, shop=shop), "X-Signature": "0" * 64}
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            with pytest.raises(Unauthenticated):
                await auth.authenticate("POST", "/v1/orders", hdrs, body)
            timings.append(time.perf_counter() - started)
        return min(timings)

    known, unknown = await fastest("demo"), await fastest("nobody")
    assert unknown > known / 3, (known, unknown)


@given(
    st.characters(categories=["Nd"], exclude_characters="0123456789"),
    st.sets(st.integers(min_value=0, max_value=9), min_size=1),
)
async def test_a_timestamp_with_unicode_digits_is_refused_even_when_signed(
    digit: str, positions: set[int]
) -> None:
    clock = ManualClock()
    auth = ShopAuthenticator({"demo": SECRET}, MemoryStore(), clock)
    ascii_stamp = str(int(clock.now()))
    # The same time in `digit`'s script at the chosen places: int() reads it as the right time, so
    # only the pattern stands between it and acceptance.
    zero = ord(digit) - unicodedata.decimal(digit)
    stamp = "".join(chr(zero + int(c)) if i in positions else c for i, c in enumerate(ascii_stamp))
    assert int(stamp) == int(ascii_stamp)
    signed = {
        "X-Shop-Id": "demo",
        "X-Timestamp": stamp,
        "X-Nonce": "nonce-0001",
        "X-Signature": request_signature(SECRET, "POST", "/v1/orders", stamp, "nonce-0001", BODY),
    }
    await expect(auth, signed, "timestamp")


async def test_a_store_that_cannot_record_the_nonce_is_503_not_a_pass(clock: ManualClock) -> None:
    store = MemoryStore()
    auth = ShopAuthenticator({"demo": SECRET}, store, clock)
    await store.close()
    with pytest.raises(StoreUnavailable):
        await auth.authenticate("POST", "/v1/orders", headers(clock.now()), BODY)
