"""Stream tokens, pure: what a token binds (shop, order, expiry), what verifying refuses, and the token
request's fields. Time moves on a `ManualClock`; forgeries are made the ways an attacker could."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import request_signature
from gateway.clock import ManualClock
from gateway.errors import InvalidRequest, Unauthenticated
from gateway.streamtokens import (
    MAX_TTL_SECONDS,
    TOKEN_KEY_LABEL,
    StreamGrant,
    StreamTokens,
    TokenRequest,
    encode_token,
    read_token_request,
    token_key,
)

SECRETS = {"demo": b"demo-secret", "other": b"other-secret"}


def tokens(clock: ManualClock, secrets: dict[str, bytes] | None = None) -> StreamTokens:
    known = SECRETS if secrets is None else secrets
    return StreamTokens(known.get, clock)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _payload(token: str) -> dict[str, object]:
    payload = token.partition(".")[0]
    doc: dict[str, object] = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return doc


def _relabelled(token: str, **changes: object) -> str:
    """The token's payload changed, its MAC kept."""
    doc = _payload(token)
    doc.update(changes)
    return _b64(orjson.dumps(doc)) + "." + token.partition(".")[2]


def test_a_minted_token_verifies_to_what_it_grants() -> None:
    clock = ManualClock()
    token, grant = tokens(clock).mint("demo", TokenRequest("SHOP-1", 300))
    assert grant == StreamGrant("demo", "SHOP-1", int(clock.now() * 1000) + 300_000)
    assert tokens(clock).verify(token) == grant  # another instance's verifier: no shared state
    whole_shop, _ = tokens(clock).mint("demo", TokenRequest(None, 60))
    assert tokens(clock).verify(whole_shop).order_id is None


def test_a_token_expires_after_its_ttl() -> None:
    clock = ManualClock()
    token, _ = tokens(clock).mint("demo", TokenRequest(None, 60))
    clock.advance(59.999)
    assert tokens(clock).verify(token).shop == "demo"
    clock.advance(0.001)
    with pytest.raises(Unauthenticated, match="token expired"):
        tokens(clock).verify(token)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: _relabelled(t, s="other"), id="shop changed"),
        pytest.param(lambda t: _relabelled(t, o="ANOTHER"), id="order changed"),
        pytest.param(lambda t: _relabelled(t, o=None), id="order dropped"),
        pytest.param(lambda t: _relabelled(t, e=int(str(_payload(t)["e"])) + 1), id="expiry moved"),
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="mac changed"),
        pytest.param(lambda t: t.partition(".")[0], id="mac removed"),
        pytest.param(lambda t: t + ".x", id="extra part"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_a_changed_token_is_refused(forge: Callable[[str], str]) -> None:
    clock = ManualClock()
    token, _ = tokens(clock).mint("demo", TokenRequest("SHOP-1", 300))
    with pytest.raises(Unauthenticated) as refused:
        tokens(clock).verify(forge(token))
    assert refused.value.message == "token"


def test_a_shop_cannot_mint_for_another_and_unknown_shops_fail_alike() -> None:
    clock = ManualClock()
    theirs, _ = tokens(clock).mint("other", TokenRequest(None, 300))
    with pytest.raises(Unauthenticated, match=r"^token$"):
        tokens(clock).verify(_relabelled(theirs, s="demo"))
    # Signed with the other shop's own key but naming ours: the key is chosen by the claimed shop.
    grant = StreamGrant("demo", None, int(clock.now() * 1000) + 60_000)
    with pytest.raises(Unauthenticated, match=r"^token$"):
        tokens(clock).verify(encode_token(SECRETS["other"], grant))
    ghost = encode_token(b"whatever", StreamGrant("ghost", None, grant.expires_ms))
    with pytest.raises(Unauthenticated, match=r"^token$"):
        tokens(clock).verify(ghost)


def test_rotating_a_shops_secret_revokes_its_tokens() -> None:
    clock = ManualClock()
    token, _ = tokens(clock).mint("demo", TokenRequest(None, 300))
    with pytest.raises(Unauthenticated):
        tokens(clock, {"demo": b"rotated"}).verify(token)


def test_a_self_made_token_cannot_outlive_the_longest_ttl() -> None:
    clock = ManualClock()
    now_ms = int(clock.now() * 1000)
    longest = encode_token(SECRETS["demo"], StreamGrant("demo", None, now_ms + MAX_TTL_SECONDS * 1000))
    assert tokens(clock).verify(longest).shop == "demo"
    forever = encode_token(SECRETS["demo"], StreamGrant("demo", None, now_ms + 86_400_000))
    with pytest.raises(Unauthenticated, match=r"^token$"):
        tokens(clock).verify(forever)


def test_the_token_key_is_not_the_secret_and_a_token_is_not_a_signature() -> None:
    secret = SECRETS["demo"]
    assert token_key(secret) == hmac.new(secret, TOKEN_KEY_LABEL, hashlib.sha256).digest()
    assert token_key(secret) != secret
    clock = ManualClock()
    token, _ = tokens(clock).mint("demo", TokenRequest(None, 300))
    payload, _, mac = token.partition(".")
    # The MAC is not what the secret itself makes over the same text (a request signature's key).
    assert mac != _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    # A request signature (64 hex digits) is not a token.
    signature = request_signature(secret, "GET", "/v1/orders/ws", str(int(clock.now())), "nonce-123", b"")
    with pytest.raises(Unauthenticated):
        tokens(clock).verify(signature)


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        b"[]",
        b"not json",
        b'{"s": "demo", "o": null}',
        b'{"s": "demo", "o": null, "e": 1, "x": 1}',
        b'{"s": "de mo", "o": null, "e": 1}',
        b'{"s": 7, "o": null, "e": 1}',
        b'{"s": "demo", "o": "no spaces", "e": 1}',
        b'{"s": "demo", "o": 7, "e": 1}',
        b'{"s": "demo", "o": null, "e": -1}',
        b'{"s": "demo", "o": null, "e": true}',
        b'{"s": "demo", "o": null, "e": "1"}',
    ],
)
def test_a_payload_that_is_not_a_grant_is_refused_before_any_key_is_used(payload: bytes) -> None:
    clock = ManualClock()
    looked_up: list[str] = []

    def secret_of(shop: str) -> bytes | None:
        looked_up.append(shop)
        return SECRETS.get(shop)

    with pytest.raises(Unauthenticated, match=r"^token$"):
        StreamTokens(secret_of, clock).verify(f"{_b64(payload)}.{_b64(b'mac')}")
    assert looked_up == []


@pytest.mark.parametrize("text", ["A.x", "A====.x", "é.x", "x" * 600 + ".x", "."])
def test_text_that_is_not_base64url_is_refused(text: str) -> None:
    with pytest.raises(Unauthenticated, match=r"^token$"):
        tokens(ManualClock()).verify(text)


def test_minting_for_a_shop_removed_meanwhile_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        tokens(ManualClock()).mint("ghost", TokenRequest(None, 60))


@given(st.text(max_size=600))
def test_any_text_is_refused_as_unauthenticated_never_anything_else(text: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens(ManualClock()).verify(text)


@given(st.binary(max_size=200), st.binary(max_size=40))
def test_any_payload_with_any_mac_is_refused(payload: bytes, mac: bytes) -> None:
    with pytest.raises(Unauthenticated):
        tokens(ManualClock()).verify(f"{_b64(payload)}.{_b64(mac)}")


def test_the_token_request_defaults_and_bounds() -> None:
    assert read_token_request(b"") == TokenRequest(None, 300)
    assert read_token_request(b"{}") == TokenRequest(None, 300)
    assert read_token_request(b'{"order_id": "A.b-1_2", "ttl_seconds": 1}') == TokenRequest("A.b-1_2", 1)
    assert read_token_request(b'{"order_id": null, "ttl_seconds": 3600}') == TokenRequest(None, 3600)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{", ["body"]),
        (b"[]", ["body"]),
        (b"\n", ["body"]),  # whitespace is not JSON, nor is it no body (found by test_openapi_conformance)
        (b" ", ["body"]),
        (b'{"ttl_seconds": 0}', ["ttl_seconds"]),
        (b'{"ttl_seconds": 3601}', ["ttl_seconds"]),
        (b'{"ttl_seconds": true}', ["ttl_seconds"]),
        (b'{"ttl_seconds": "60"}', ["ttl_seconds"]),
        (b'{"order_id": ""}', ["order_id"]),
        (b'{"order_id": "' + b"x" * 65 + b'"}', ["order_id"]),
        (b'{"order_id": "\xef\xbc\x91"}', ["order_id"]),  # a full-width digit
        (b'{"order_id": 1, "ttl_seconds": -1, "shop": "other"}', ["shop", "order_id", "ttl_seconds"]),
    ],
)
def test_a_bad_token_request_names_every_bad_field(body: bytes, fields: list[str]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read_token_request(body)
    assert [d["field"] for d in refused.value.details or ()] == fields
