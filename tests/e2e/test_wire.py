"""What happens on the wire decides "sent or not": a supplier that charged and then broke the connection.

juhe and ofpay submit by GET, which aiohttp would silently send a second time after a dropped
connection; and a second connect that fails would then read as "never sent" and fail over. Here
a real TCP server takes the submit (the charge), resets the connection, and in one case stops
listening. The gateway must send exactly one request there, call the outcome unknown, and send
nothing to the next supplier.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from gateway.simulator.traffic import Operation
from tests.e2e.harness import Deployment, Gateway, SupplierSpec

JUHE_CREDENTIALS = {"key": "wire-test-key", "openid": "wire-test-openid"}


class ChargingResetter:
    """Reads each submit's head, counts it as a charge, then resets the connection (RST)."""

    def __init__(self, *, refuse_after_first: bool) -> None:
        self.refuse_after_first = refuse_after_first
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"onlineorder" not in head.split(b"\r\n", 1)[0]:
            # Not a submit (juhe's and ofpay's both go to .../onlineorder): the balance read, which
            # this supplier leaves unknown. Only submits charge and reset.
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        self.requests.append(head)
        sock = writer.get_extra_info("socket")
        # Linger 0: close() sends RST instead of FIN, the way a crashing supplier drops it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.refuse_after_first and self.server is not None:
            self.server.close()  # no more listening socket: the next connect is refused
        writer.transport.abort()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture(params=[False, True], ids=["reset", "reset-then-refuse"])
async def resetter(request: pytest.FixtureRequest) -> AsyncIterator[ChargingResetter]:
    server = ChargingResetter(refuse_after_first=request.param)
    yield server
    await server.stop()


@pytest.mark.parametrize("protocol", ["juhe", "ofpay"])
async def test_a_get_submit_is_sent_once_and_never_failed_over(
    gateway: Gateway, resetter: ChargingResetter, protocol: str
) -> None:
    url = await resetter.start()
    credentials = (
        JUHE_CREDENTIALS
        if protocol == "juhe"
        else {"userid": "A100", "password": "wire-test-password", "keystr": "wire-test-keystr"}
    )
    deployment = await with_a_healthy_second(
        gateway, SupplierSpec(url=url, protocol=protocol, credentials=credentials)
    )
    status, order = await deployment.shop.place(order_id="WIRE-1", wait_seconds=1)
    assert status == 201, order

    assert len(resetter.requests) == 1, "the submit reached the supplier more than once"
    assert resetter.requests[0].startswith(b"GET ")
    assert order["status"] == "processing"
    assert order["reason"] == "outcome_unknown"
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [("first", "unknown")]
    # What the shop reads says nothing of hosts, ports or the request's query string.
    message = order["attempts"][0]["message"]
    assert "127.0.0.1" not in message
    assert "sign" not in message
    assert "key=" not in message
    await asyncio.sleep(0.3)  # a failover, if any, would have reached the healthy supplier by now
    assert deployment.simulators["healthy"].requests.requests(Operation.SUBMIT) == []


async def with_a_healthy_second(gateway: Gateway, first: SupplierSpec) -> Deployment:
    """`first` as the preferred offer, a healthy simulated supplier behind it to fail over to."""
    return await gateway(
        {"first": first, "healthy": SupplierSpec()},
        offers=[
            {"supplier": "first", "sku": "50", "cost": "49.30", "priority": 1},
            {"supplier": "healthy", "sku": "18221081", "cost": "49.40", "priority": 2},
        ],
    )


async def test_a_supplier_that_never_listened_is_not_executed(gateway: Gateway) -> None:
    """The other side of the line: a refused first connect certainly sent nothing, so routing goes on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = SupplierSpec(url=f"http://127.0.0.1:{port}", protocol="juhe", credentials=JUHE_CREDENTIALS)
    deployment = await with_a_healthy_second(gateway, down)
    status, order = await deployment.shop.place(order_id="WIRE-2", wait_seconds=1)
    assert status == 201, order
    assert order["status"] == "succeeded"
    assert [(a["supplier"], a["outcome"]) for a in order["attempts"]] == [
        ("first", "not_executed"),
        ("healthy", "succeeded"),
    ]
    assert str(port) not in order["attempts"][0]["message"]
