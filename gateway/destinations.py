"""Where shop notifications may connect: public addresses, and private ones only where a shop lists them.

Enforced in the resolver of the notification sessions' connectors, so the address connected to is
the address checked: a listed host name that resolves (or is re-pointed, DNS rebinding) to a
loopback, private, link-local, multicast, reserved or unspecified address is never reached unless
that address itself is in the shop's `notify_hosts`. Builds connections only; delivering is the
notifier's.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Final, TypeAlias

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Address: TypeAlias = IPv4Address | IPv6Address

# NAT64 prefixes carry an IPv4 address in their last 32 bits (RFC 6052, RFC 8215).
_NAT64: Final = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))
SHOWN_ADDRESSES: Final = 3


class DestinationRefused(OSError):
    """A notification's host resolves to no address the shop may be notified at."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)


def allowed_addresses(notify_hosts: Iterable[str]) -> frozenset[Address]:
    """The IP literals among a shop's `notify_hosts`: private addresses the shop vouches for."""
    allowed: set[Address] = set()
    for host in notify_hosts:
        try:
            allowed.add(_plain(ip_address(host)))
        except ValueError:
            continue  # a host name: it allows its public addresses only
    return frozenset(allowed)


def is_public(address: Address) -> bool:
    """An address on the internet at large: nothing of this machine, its networks or special ranges."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)  # the very IPv4 address, spelt as IPv6
    for inner in _embedded(address):
        if not is_public(inner):
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def may_connect(address: Address, allowed: frozenset[Address]) -> bool:
    return _plain(address) in allowed or is_public(address)


def _plain(address: Address) -> Address:
    """An IPv4-mapped IPv6 address as the IPv4 address it is; the scope of a link-local one dropped."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return IPv6Address(str(address).split("%", 1)[0])
    return address


def _embedded(address: Address) -> tuple[IPv4Address, ...]:
    """IPv4 addresses an IPv6 address hands traffic to (6to4, Teredo, NAT64): judged with it."""
    if not isinstance(address, IPv6Address):
        return ()
    inner: list[IPv4Address] = []
    if address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address.teredo is not None:
        inner.extend(address.teredo)
    if any(address in network for network in _NAT64):
        inner.append(IPv4Address(int(address) & 0xFFFFFFFF))
    return tuple(inner)


class GuardedResolver(AbstractResolver):
    """Resolves through `dns`, keeping only addresses the shop may be notified at.

    The connector connects only to what this returns, so a name that resolves elsewhere on the
    next lookup still cannot reach a refused address.
    """

    def __init__(self, dns: AbstractResolver, allowed: frozenset[Address]) -> None:
        self._dns = dns
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._dns.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            try:
                address = ip_address(result["host"])
            except ValueError:
                refused.append(result["host"])
                continue
            if may_connect(address, self._allowed):
                kept.append(result)
            else:
                refused.append(result["host"])
        if not kept:
            shown = ", ".join(refused[:SHOWN_ADDRESSES]) + (", ..." if len(refused) > SHOWN_ADDRESSES else "")
            raise DestinationRefused(
                f"{host} resolves to no address notifications may go to ({shown or 'none'}): "
                "a loopback, private or special address is reached only when listed in notify_hosts"
            )
        return kept

    async def close(self) -> None:
        """The underlying DNS is shared by every guarded resolver: `NotificationSessions` closes it."""


class NotificationSessions:
    """HTTP client sessions for shop notifications, one per set of private addresses allowed.

    Apart from the supplier session and from each other, since pooled connections and the DNS
    cache belong to a connector: a connection opened to an address one shop lists must never
    serve a shop that does not list it.
    """

    def __init__(self, dns: AbstractResolver | None = None) -> None:
        self._dns = dns  # the system's when None, made on first use (it needs the running loop)
        self._sessions: dict[frozenset[Address], aiohttp.ClientSession] = {}

    def session(self, allowed: frozenset[Address]) -> aiohttp.ClientSession:
        """The session whose connections reach public addresses and those in `allowed` only."""
        session = self._sessions.get(allowed)
        if session is None:
            if self._dns is None:
                self._dns = DefaultResolver()
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._dns, allowed), limit=0, limit_per_host=0
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "supplier-gateway/0.1"},
                trust_env=False,  # a proxy from the environment would connect on our behalf, unchecked
            )
            self._sessions[allowed] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        if self._dns is not None:
            await self._dns.close()
