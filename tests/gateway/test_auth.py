"""Shop request authentication: signature, time window and nonce replay, with an injected clock."""

from __future__ import annotations

import pytest

from gateway.auth import ShopAuthenticator, request_signature
from gateway.clock import ManualClock
from gateway.errors import Unauthenticated
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
