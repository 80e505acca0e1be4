"""Both listeners of a real `gateway run` process against their own OpenAPI documents, with schemathesis.

Schemathesis generates requests from each document (its examples, boundary cases, then random valid and
invalid data), signs every shop request as a shop does (a fresh nonce and timestamp, the signature over the
exact bytes sent) and sends the admin token; every answer must be documented: no 5xx, a documented status,
content type and body, and invalid input refused with a 4xx. A stateful run places orders, replays them and
reads them back by the document's links; afterwards the simulated suppliers' ledgers are audited against the
gateway's orders: each order charged at most once, as the gateway says.

Bounded and reproducible: a fixed seed, a few examples per operation, no example database.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.openapi.admin import admin_document
from gateway.openapi.document import Document
from gateway.openapi.shop import shop_document
from gateway.simulator import ChargeState, LedgerEntry, Simulator
from tests.e2e.fleet import GatewayProcess, admin_listening_on, restartable_port, start_supplier
from tests.e2e.harness import SECRET, SHOP, SupplierSpec, config_yaml
from tests.e2e.shop_signature import ShopSignature

# A longer hunt: OPENAPI_FUZZ_SEED=<n> OPENAPI_FUZZ_EXAMPLES=<n> (the defaults keep CI short and the same).
SEED: Final = int(os.environ.get("OPENAPI_FUZZ_SEED", "20261122"))
EXAMPLES: Final = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "10"))
ADMIN_TOKEN: Final = "admin-token"  # the harness's
PRODUCT: Final = "mobile.cmcc.50"
CHECKS: Final = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
)
# A live gateway remembers every request: replaying one to shrink it meets another state (a replayed order is
# 200, not 201), which Hypothesis reports as flaky. The first failure is reported as it came.
NO_SHRINKING: Final = (Phase.explicit, Phase.reuse, Phase.generate)
FUZZ: Final = settings(
    max_examples=EXAMPLES,
    phases=NO_SHRINKING,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
REQUEST_LINE_LIMIT: Final = 8190  # aiohttp's default max_line_size
# A stream never ends by itself: schemathesis reads it for this long, then checks what came.
STREAM_SECONDS: Final = 0.3
T = TypeVar("T")
Case = schemathesis.Case[Any]


class SupplierLoop:
    """A thread with its own event loop, serving the simulated suppliers while the tests block on requests.

    Schemathesis calls are synchronous; suppliers served on the test's own loop would stand still meanwhile.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="suppliers", daemon=True)
        self._thread.start()
        self.cleanups: list[Callable[[], Awaitable[None]]] = []

    def run(self, awaitable: Awaitable[T], timeout: float = 30.0) -> T:
        async def wait() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wait(), self._loop).result(timeout)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            self.run(cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


QUICK: Final = {"latency": 0.0, "result_after": 0.05, "success_rate": 1.0}
# Every protocol, so that callbacks reach each adapter's parser; fulu fails a third of its orders (failover).
SUPPLIERS: Final = {
    "fulu": SupplierSpec(knobs={**QUICK, "success_rate": 0.67}),
    "backup": SupplierSpec(knobs=QUICK),
    "ofpay": SupplierSpec(
        knobs=QUICK,
        protocol="ofpay",
        credentials={"userid": "A1234567", "password": "demo-password", "keystr": "OFCARD"},
    ),
    "juhe": SupplierSpec(
        knobs=QUICK, protocol="juhe", credentials={"key": "demo-key", "openid": "demo-openid"}
    ),
    "dayuanren": SupplierSpec(
        knobs=QUICK, protocol="dayuanren", credentials={"userid": "10001", "apikey": "demo-apikey"}
    ),
}


@dataclass
class LiveGateway:
    """A `gateway run` process with a simulated supplier of every protocol."""

    shop_url: str
    admin_url: str
    simulators: dict[str, Simulator]
    loop: SupplierLoop
    process: GatewayProcess


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """One process for the stateless runs of both listeners: what one run leaves, the other may meet."""
    yield from _live(tmp_path_factory.mktemp("live"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[LiveGateway]:
    """A process of its own, whose every order the audit can account for."""
    yield from _live(tmp_path)


def _live(tmp_path: Path) -> Iterator[LiveGateway]:
    port, admin_port = restartable_port(), restartable_port()
    loop = SupplierLoop()
    simulators: dict[str, Simulator] = {}
    urls: dict[str, SupplierSpec] = {}
    for name, spec in SUPPLIERS.items():
        simulator, url = loop.run(start_supplier(name, spec, port, loop.cleanups, callback_retry_seconds=0.1))
        simulators[name] = simulator
        urls[name] = replace(spec, url=url)
    offers = [
        {"supplier": "fulu", "sku": "18221081", "cost": "49.30", "priority": 1},
        {"supplier": "backup", "sku": "18221081", "cost": "49.50", "priority": 2},
        # Never reached while backup takes everything: there for their callbacks' parsers to be fuzzed.
        {"supplier": "ofpay", "sku": "140101", "cost": "49.50", "priority": 3},
        {"supplier": "juhe", "sku": "50", "cost": "49.25", "priority": 3},
        {"supplier": "dayuanren", "sku": "101", "cost": "49.35", "priority": 3},
    ]
    config = tmp_path / "gateway.yaml"
    config.write_text(admin_listening_on(config_yaml(port, urls, offers), admin_port))
    process = GatewayProcess(config, port, tmp_path)
    try:
        loop.run(process.start())
        yield LiveGateway(
            shop_url=f"http://127.0.0.1:{port}",
            admin_url=f"http://127.0.0.1:{admin_port}",
            simulators=simulators,
            loop=loop,
            process=process,
        )
        assert loop.run(process.stop()) == 0
        assert process.troubles() == []
    finally:
        loop.run(process.stop())
        loop.close()


def _config(mode: str = "all", **more: Any) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"mode": mode, "database": "none", "with-security-parameters": False},
            "request-timeout": 15,
            # Only the document's own links: links inferred from response fields would make which steps a
            # scenario may take depend on what the live gateway answered, which Hypothesis cannot replay.
            "phases": {"stateful": {"inference": {"algorithms": []}}},
            "operations": [
                {"include-operation-id": "orderEvents", "request-timeout": STREAM_SECONDS},
            ],
            **more,
        }
    )


def _schema(document: Document, mode: str = "all", **config: Any) -> Any:
    """The document as the listener serves it (test_openapi.py checks that the bytes are the same)."""
    return schemathesis.openapi.from_dict(orjson.loads(document.encode()), config=_config(mode, **config))


def fits_the_request_line(context: schemathesis.HookContext, case: Case) -> bool:
    """Whether the request line stays within aiohttp's `max_line_size`: the HTTP server refuses a longer one
    (400, plain text) before any route sees it, which no operation of a document can describe."""
    sent = case.as_transport_kwargs(base_url="http://127.0.0.1")
    prepared = requests.Request(method=sent["method"], url=sent["url"], params=sent.get("params")).prepare()
    return len(f"{prepared.method} {prepared.path_url} HTTP/1.1") <= REQUEST_LINE_LIMIT


def configured_supplier(context: schemathesis.HookContext, path: dict[str, Any]) -> dict[str, Any]:
    """Most generated supplier names made one the gateway has, so that callbacks reach every adapter's
    parser; one in four left as generated (almost always `404 not_found`)."""
    name = path.get("supplier")
    if not isinstance(name, str) or name in SUPPLIERS:
        return path
    index = int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest()[:2], "big")
    names = sorted(SUPPLIERS)
    return path if index % 4 == 0 else {**path, "supplier": names[index % len(names)]}


# Loaded here, not from a fixture: schemathesis's `from_fixture` does not run under pytest 9 (it sets the
# removed `Node._nodeid`). The listeners' addresses come with each call instead.
SHOP_API = _schema(shop_document())
SHOP_API.auth.set_from_requests(ShopSignature(SHOP, SECRET))
ADMIN_API = _schema(admin_document(), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
for api in (SHOP_API, ADMIN_API):
    api.hook("filter_case")(fits_the_request_line)
SHOP_API.hook("map_path_parameters").apply_to(path="/callbacks/{supplier}")(configured_supplier)


def _call_and_check(case: Case, base_url: str) -> None:
    response = case.call(base_url=base_url)
    case.validate_response(response, checks=list(CHECKS), transport_kwargs={"base_url": base_url})


@SHOP_API.parametrize()
@FUZZ
def test_the_shop_listener_answers_as_its_document_says(case: Case, live: LiveGateway) -> None:
    _call_and_check(case, live.shop_url)


@ADMIN_API.parametrize()
@FUZZ
def test_the_admin_listener_answers_as_its_document_says(case: Case, live: LiveGateway) -> None:
    _call_and_check(case, live.admin_url)


# -- stateful: orders placed, placed again and read back, then the money audit -----------------------------


def account_for(order_id: str) -> str:
    """A mobile number of its own for each order_id (the same for a replay): every charge names its order."""
    digits = int.from_bytes(hashlib.sha256(order_id.encode()).digest()[:8], "big") % 10**9
    return f"13{digits:09d}"


class Orderable:
    """Makes a generated order one the gateway takes: the configured product, an account of the order's
    own, no notify_url (its host would have to be in notify_hosts), a short wait; quantity and
    allow_duplicate as generated. The order_id is prefixed with the scenario's number: Hypothesis draws
    a scenario again from the same choices and must meet the same answers, which an order_id an earlier
    scenario placed would change (200 or 409 where the first run had 201)."""

    def __init__(self) -> None:
        self.scenarios = 0

    def next_scenario(self) -> None:
        self.scenarios += 1

    def __call__(self, context: schemathesis.HookContext, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("order_id"), str):
            return body
        order_id = f"S{self.scenarios}-{body['order_id']}"[:64]
        kept = {name: body[name] for name in ("quantity", "allow_duplicate") if name in body}
        wait = min(body.get("wait_seconds", 0), 0.5)
        return {
            **kept,
            "order_id": order_id,
            "product": PRODUCT,
            "account": account_for(order_id),
            "wait_seconds": wait,
        }


STATEFUL: Final = settings(
    max_examples=int(os.environ.get("OPENAPI_STATEFUL_EXAMPLES", "15")),
    phases=NO_SHRINKING,
    stateful_step_count=6,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
SETTLE_SECONDS: Final = 15.0


def test_orders_placed_again_and_read_back_by_the_documents_links_are_charged_at_most_once(
    fresh: LiveGateway,
) -> None:
    schema = _schema(shop_document(), mode="positive").include(operation_id=["placeOrder", "getOrder"])
    schema.auth.set_from_requests(ShopSignature(SHOP, SECRET))
    orderable = Orderable()
    schema.hook("map_body").apply_to(operation_id="placeOrder")(orderable)
    answered: Counter[tuple[str, int]] = Counter()

    class Orders(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            orderable.next_scenario()

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": fresh.shop_url}

        def after_call(self, response: schemathesis.Response, case: Case) -> None:
            super().after_call(response, case)
            answered[(case.operation.definition.raw["operationId"], response.status_code)] += 1

        def validate_response(
            self, response: schemathesis.Response, case: Case, *_: Any, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=list(CHECKS), transport_kwargs=kwargs)

    Orders.run(settings=STATEFUL)
    # The links were followed: orders were placed, placed again (the same body: 200) and read back.
    assert answered[("placeOrder", 201)] >= 5, answered
    assert answered[("placeOrder", 200)] >= 1, answered
    assert answered[("getOrder", 200)] >= 1, answered

    orders = settled_orders(fresh)
    assert len(orders) == answered[("placeOrder", 201)], "every order placed is stored, and no other"
    problems = audit(orders, fresh.loop.run(ledger_entries(fresh.simulators)))
    assert problems == [], "\n".join(problems)


def settled_orders(live: LiveGateway) -> list[dict[str, Any]]:
    """Every order of the gateway once none is processing (the operator's view: attempts with their ids)."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        answer = requests.get(f"{live.admin_url}/admin/orders?limit=1000", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        listing = answer.json()
        assert not listing["has_more"]
        open_orders = [o["order_id"] for o in listing["orders"] if o["status"] == "processing"]
        if not open_orders:
            return list(listing["orders"])
        assert time.monotonic() < deadline, f"still processing after {SETTLE_SECONDS} s: {open_orders}"
        time.sleep(0.2)


async def ledger_entries(simulators: Mapping[str, Simulator]) -> dict[str, list[LedgerEntry]]:
    """The suppliers' ledgers as of now, read on their own loop (they change there)."""
    # An audit over a ledger that dropped entries would prove nothing.
    assert all(simulator.ledger.forgotten == 0 for simulator in simulators.values())
    return {name: simulator.ledger.entries() for name, simulator in simulators.items()}


def audit(orders: list[dict[str, Any]], ledgers: Mapping[str, list[LedgerEntry]]) -> list[str]:
    """Every breach of the money rule, one line each: an order charged more than once, a charge no order
    names, an order whose status or attempts say otherwise than the supplier's ledger."""
    problems: list[str] = []
    entries = {(name, e.upstream_order_id): e for name, ledger in ledgers.items() for e in ledger}
    named: dict[tuple[str, str], str] = {}
    for order in orders:
        order_id = order["order_id"]
        delivering: list[LedgerEntry] = []
        for attempt in order["attempts"]:
            key = (attempt["supplier"], attempt["upstream_order_id"])
            if key in named:
                problems.append(f"{order_id}: upstream id {key} is also {named[key]}'s")
            named[key] = order_id
            entry = entries.get(key)
            outcome = attempt["outcome"]
            if entry is not None and entry.account != order["account"]:
                problems.append(f"{order_id}: {key} charged account {entry.account}")
            if entry is not None and entry.delivers:
                delivering.append(entry)
            if outcome in ("succeeded", "partial") and (entry is None or entry.state != ChargeState(outcome)):
                problems.append(f"{order_id}: {key} is {outcome}, the ledger says {entry and entry.state}")
            if outcome in ("failed", "not_executed") and entry is not None and entry.delivers:
                problems.append(f"{order_id}: {key} is {outcome}, the ledger says {entry.state}")
        if len(delivering) > 1:
            problems.append(f"{order_id}: charged {len(delivering)} times")
        match order["status"]:
            case "succeeded" | "partial":
                if [e.state.value for e in delivering] != [order["status"]]:
                    problems.append(f"{order_id}: {order['status']}, the ledgers hold {delivering}")
            case "failed":
                if delivering:
                    problems.append(f"{order_id}: failed, but charged {delivering}")
            case status:
                problems.append(f"{order_id}: {status} after settling")
    for (name, upstream_id), entry in entries.items():
        if entry.submissions > 1:
            problems.append(f"{name}: {upstream_id} submitted {entry.submissions} times")
        if entry.charged and (name, upstream_id) not in named:
            problems.append(f"{name}: charged {upstream_id}, which no order names")
    return problems


pytestmark = pytest.mark.slow
