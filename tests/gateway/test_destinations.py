"""Where notifications may connect, on real sockets; only the DNS is a stand-in, answering as told."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from ipaddress import ip_address

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from gateway.destinations import (
    DestinationRefused,
    GuardedResolver,
    NotificationSessions,
    allowed_addresses,
    is_public,
)


class ScriptedDns(AbstractResolver):
    """Answers each name with the next of its scripted answers (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        script = self.answers[host]
        addresses = script.pop(0) if len(script) > 1 else script[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.5",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
]


@pytest.mark.parametrize("address", REFUSED)
async def test_a_name_resolving_to_a_special_address_is_refused(address: str) -> None:
    resolver = GuardedResolver(ScriptedDns({"hooks.shop.test": [[address]]}), frozenset())
    assert not is_public(ip_address(address))
    with pytest.raises(DestinationRefused, match=r"hooks\.shop\.test resolves to no address"):
        await resolver.resolve("hooks.shop.test", 443)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ip_address(address))


async def test_only_allowed_addresses_are_kept_from_a_mixed_answer() -> None:
    dns = ScriptedDns({"hooks.shop.test": [["10.0.0.5", "8.8.8.8", "127.0.0.1", "192.168.0.7"]]})
    kept = await GuardedResolver(dns, allowed_addresses(["hooks.shop.test", "192.168.0.7"])).resolve(
        "hooks.shop.test", 443
    )
    assert [result["host"] for result in kept] == ["8.8.8.8", "192.168.0.7"]


async def test_every_lookup_is_judged_so_rebinding_gains_nothing() -> None:
    dns = ScriptedDns({"rebind.test": [["8.8.8.8"], ["127.0.0.1"]]})
    resolver = GuardedResolver(dns, frozenset())
    assert [r["host"] for r in await resolver.resolve("rebind.test", 80)] == ["8.8.8.8"]
    with pytest.raises(DestinationRefused):
        await resolver.resolve("rebind.test", 80)


def test_only_ip_literals_in_notify_hosts_allow_private_addresses() -> None:
    assert allowed_addresses(["127.0.0.1", "localhost", "::ffff:10.0.0.9", "shop.example.com"]) == {
        ip_address("127.0.0.1"),
        ip_address("10.0.0.9"),
    }


@pytest.fixture
async def hook() -> AsyncIterator[tuple[list[bytes], int]]:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    assert server.port is not None
    yield received, server.port
    await server.close()


async def test_a_session_connects_only_where_its_shop_allows(hook: tuple[list[bytes], int]) -> None:
    received, port = hook
    dns = ScriptedDns({"hooks.shop.test": [["127.0.0.1"]]})
    sessions = NotificationSessions(dns)
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await sessions.session(frozenset()).post(f"http://hooks.shop.test:{port}/hook", data=b"1")
        assert isinstance(refused.value.os_error, DestinationRefused)
        assert received == []  # nothing reached the socket

        allowed = sessions.session(allowed_addresses(["hooks.shop.test", "127.0.0.1"]))
        async with allowed.post(f"http://hooks.shop.test:{port}/hook", data=b"2") as response:
            assert response.status == 200
        assert received == [b"2"]
        assert dns.asked == ["hooks.shop.test", "hooks.shop.test"]
    finally:
        await sessions.close()
