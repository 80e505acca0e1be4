"""The generic simulated supplier: decides each order's fate from the knobs and serves a front.

Protocol-free: every byte on the wire is the front's. Owns fates, faults, timing, the ledger, the
prepaid account charges draw on, the request log, background finishing and callbacks, and the
aiohttp app they run in.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, assert_never

from aiohttp import web

from gateway.clock import Clock, SystemClock
from gateway.config.model import SimulateConfig
from gateway.simulator.account import PrepaidAccount
from gateway.simulator.courier import Courier
from gateway.simulator.faults import Fault
from gateway.simulator.front import (
    BalanceRequest,
    Front,
    HttpReply,
    Incoming,
    QueryRequest,
    Reading,
    Refusal,
    Rejection,
    SubmitRequest,
    reply,
)
from gateway.simulator.ledger import ChargeState, Ledger, LedgerEntry
from gateway.simulator.listener import Listener, reset
from gateway.simulator.traffic import Operation, RequestLog

PRICE_RATIO: Final = 0.986
"""What the supplier charges per unit of face value: 50 costs 49.30, as in fulu.md's callback."""

INTERNAL_ERROR: Final = reply(
    500, "text/html", b"<html><head><title>500 Internal Server Error</title></head><body>nginx</body></html>"
)

_GARBAGE_KINDS: Final = 3  # truncated reply, HTML page, empty body


class Fate(StrEnum):
    """What a submit gets back, drawn from the knobs."""

    ACCEPT = "accept"
    REFUSE = "refuse"
    HANG = "hang"
    ERROR = "error"
    GARBAGE = "garbage"
    RESET = "reset"
    CRASH = "crash"


class Silence(StrEnum):
    """A submit the simulator answers with no reply at all."""

    HANG = "hang"  # the connection stays open, unanswered, until shutdown
    RESET = "reset"  # the connection is reset
    CRASH = "crash"  # every connection is reset and new ones are refused for a while


_SILENCES: Final[Mapping[Fate, Silence]] = MappingProxyType(
    {Fate.HANG: Silence.HANG, Fate.RESET: Silence.RESET, Fate.CRASH: Silence.CRASH}
)
_FATE_FAULTS: Final[Mapping[Fate, Fault]] = MappingProxyType(
    {Fate.RESET: Fault.RESET, Fate.CRASH: Fault.CRASH}
)
_SILENT_FAULTS: Final[Mapping[Silence, Fault]] = MappingProxyType(
    {Silence.RESET: Fault.RESET, Silence.CRASH: Fault.CRASH}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """One submit's whole story, drawn at once so a seed fixes it whatever the timing."""

    fate: Fate
    final: ChargeState
    delivered_share: int  # quarters of the value delivered, on partial results
    garbage_kind: int
    callback_copies: int  # 0 when the callback is dropped
    result_after: float
    callback_delay: float
    lagging: bool  # queries say "not found" for `lag_for` after the submit
    lag_for: float
    forged: bool  # forged callbacks precede the real ones
    refuse_for: float  # how long a crash refuses connections

    @property
    def faults(self) -> frozenset[Fault]:
        drawn = {_FATE_FAULTS[self.fate]} if self.fate in _FATE_FAULTS else set()
        if self.lagging:
            drawn.add(Fault.LAG)
        if self.forged:
            drawn.add(Fault.FORGED_CALLBACK)
        return frozenset(drawn)


class Simulator:
    """One simulated supplier: `app` serves `front`'s protocol; `knobs` may be replaced any time.

    Serve it with `serve` (or any aiohttp server, except that `crash_rate` needs `serve`'s
    listener to stop listening: elsewhere a crash only resets its own connection and `idle`
    raises to say so).
    """

    def __init__(
        self,
        front: Front,
        *,
        knobs: SimulateConfig,
        callback_url: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        catalog: Mapping[str, int] | None = None,
        callback_attempts: int = 5,
        callback_retry_seconds: float = 0.2,
        callback_timeout_seconds: float = 2.0,
    ) -> None:
        """`catalog` maps skus to face value cents; when given, other skus are refused as unknown."""
        self.front = front
        self.knobs = knobs
        self.ledger = Ledger()
        self.requests = RequestLog()
        # Balance calls apart: `requests` stays the record of order traffic tests count on.
        self.balance_requests = RequestLog()
        self.callback_url = callback_url
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random(knobs.seed)
        self._catalog: Mapping[str, int] = MappingProxyType(dict(catalog or {}))
        # Taken from the knobs once: replacing the knobs later changes fates, not the money.
        self.account = PrepaidAccount(
            knobs.balance,
            self._clock,
            top_up_cents=knobs.top_up.amount if knobs.top_up is not None else 0,
            top_up_every=knobs.top_up.every if knobs.top_up is not None else None,
        )
        self._courier = Courier(
            attempts=callback_attempts,
            retry_seconds=callback_retry_seconds,
            timeout_seconds=callback_timeout_seconds,
        )
        self._admitted: deque[float] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: list[BaseException] = []
        self._released = asyncio.Event()
        self._sequence = 0
        self.listeners: list[Listener] = []
        self.app = web.Application()
        self.app[SIMULATOR] = self
        self.app.add_routes([web.route(method, path, self._handle) for method, path in front.routes])
        self.app.cleanup_ctx.append(self._context)
        self.app.on_shutdown.append(self._release_hung)

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> Listener:
        """Listen on `host:port` (0: a free port) with a listener a crash can stop; `close` it after."""
        listener = Listener(self.app, host, port, clock=self._clock)
        await listener.start()
        self.listeners.append(listener)
        return listener

    async def start(self) -> None:
        await self._courier.start()
        self._released = asyncio.Event()

    async def stop(self) -> None:
        self._released.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._courier.close()

    async def idle(self) -> None:
        """Until every order accepted so far is final and its callbacks are done; re-raises a crash.

        Bound it with `asyncio.timeout`: a hung callback retry loop would otherwise hold it.
        """
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._failures:
            raise self._failures[0]

    async def respond(self, request: Incoming) -> HttpReply | Silence:
        """The answer to one request after the latency knob, or no answer at all.

        A crash has already happened when this returns `Silence.CRASH`; a hang returns at once.
        """
        knobs = self.knobs
        reading = self.front.read(request)
        operation = _operation(reading)
        now = self._clock.monotonic()
        answer: HttpReply | Silence
        fault = None
        if self._throttled(now, knobs):
            answer = self.front.rejection_reply(
                Rejection(refusal=Refusal.THROTTLED, operation=operation, upstream_order_ids=_ids(reading))
            )
        elif isinstance(reading, Rejection):
            answer = self.front.rejection_reply(reading)
        elif isinstance(reading, QueryRequest):
            answer, fault = self._query(reading, now)
        elif isinstance(reading, BalanceRequest):
            answer = self.front.balance_reply(self.account.read())
        else:
            answer = self._submit(reading, knobs)
            if isinstance(answer, Silence):
                fault = _SILENT_FAULTS.get(answer)
        log = self.balance_requests if operation is Operation.BALANCE else self.requests
        log.record(now, operation, fault)
        if answer is Silence.HANG:
            return answer
        if knobs.latency > 0:
            await asyncio.sleep(knobs.latency)
        return answer

    def _query(self, query: QueryRequest, now: float) -> tuple[HttpReply, Fault | None]:
        found = {}
        lagged = False
        for upstream_order_id in query.upstream_order_ids:
            entry = self.ledger.get(upstream_order_id)
            if entry is None or not entry.charged:
                continue
            if entry.lagging_until is not None and now < entry.lagging_until:
                lagged = True  # the replica that answers has not seen it yet
                continue
            found[upstream_order_id] = entry
        return self.front.query_reply(query, found), Fault.LAG if lagged else None

    def _submit(self, request: SubmitRequest, knobs: SimulateConfig) -> HttpReply | Silence:
        upstream_order_id = request.upstream_order_id
        existing = self.ledger.get(upstream_order_id)
        if existing is not None:
            self.ledger.update(upstream_order_id, submissions=existing.submissions + 1)
            return self._rejection(Refusal.DUPLICATE, upstream_order_id)
        face_value_cents = request.face_value_cents
        if request.sku is not None and self._catalog:
            if request.sku not in self._catalog:
                self._record(request, None, charged=False)
                return self._rejection(Refusal.UNKNOWN_PRODUCT, upstream_order_id)
            face_value_cents = self._catalog[request.sku]
        cost_cents = _cost_cents(face_value_cents, request.quantity)
        # The supplier looks at the money first: a charge beyond the balance is refused, whatever
        # fate the knobs would have drawn (drawn nothing, so seeds keep their stories).
        if cost_cents is not None and cost_cents > self.account.balance_cents:
            self.account.charge(upstream_order_id, cost_cents)  # refused: remembered, nothing taken
            self._record(request, face_value_cents, charged=False)
            return self._rejection(Refusal.BALANCE_INSUFFICIENT, upstream_order_id)
        plan = self._plan(knobs, partial_possible=face_value_cents is not None)
        charged = plan.fate is not Fate.REFUSE and (plan.fate is not Fate.HANG or knobs.hang_charges)
        if charged and cost_cents is not None:
            self.account.charge(upstream_order_id, cost_cents)
        entry = self._record(request, face_value_cents, charged=charged, plan=plan)
        if charged:
            self._spawn(self._finish(upstream_order_id, plan))
        match plan.fate:
            case Fate.ACCEPT:
                return self.front.submit_reply(entry)
            case Fate.REFUSE:
                return self._rejection(Refusal.REFUSED, upstream_order_id)
            case Fate.HANG | Fate.RESET:
                return _SILENCES[plan.fate]
            case Fate.CRASH:
                self._crash(plan.refuse_for)
                return Silence.CRASH
            case Fate.ERROR:
                return INTERNAL_ERROR
            case Fate.GARBAGE:
                return self._garbage(entry, plan.garbage_kind)
            case _:
                assert_never(plan.fate)

    def _crash(self, refuse_for: float) -> None:
        if not self.listeners:
            self._failures.append(
                RuntimeError(
                    "crash_rate needs the simulator served by Simulator.serve(): nothing stopped listening"
                )
            )
        for listener in self.listeners:
            listener.crash(refuse_for)

    def _record(
        self,
        request: SubmitRequest,
        face_value_cents: int | None,
        *,
        charged: bool,
        plan: _Plan | None = None,
    ) -> LedgerEntry:
        self._sequence += 1
        cost_cents = _cost_cents(face_value_cents, request.quantity)
        accepted_at = self._clock.monotonic()
        # Faults count what happened: an order never charged cannot lag or be called back about.
        faults = plan.faults if plan is not None and charged else frozenset()
        return self.ledger.add(
            LedgerEntry(
                upstream_order_id=request.upstream_order_id,
                account=request.account,
                sku=request.sku,
                face_value_cents=face_value_cents,
                quantity=request.quantity,
                cost_cents=cost_cents,
                supplier_order_id=self.front.supplier_order_id(self._sequence),
                charged=charged,
                state=ChargeState.CHARGING if charged else ChargeState.NOT_CHARGED,
                notify_url=request.notify_url,
                accepted_at=accepted_at,
                faults=faults,
                lagging_until=accepted_at + plan.lag_for
                if plan is not None and Fault.LAG in faults
                else None,
            )
        )

    def _plan(self, knobs: SimulateConfig, *, partial_possible: bool) -> _Plan:
        rng = self._rng
        draw, edge, fate = rng.random(), 0.0, Fate.ACCEPT
        for candidate, rate in (
            (Fate.REFUSE, knobs.refuse_rate),
            (Fate.HANG, knobs.hang_rate),
            (Fate.ERROR, knobs.error_rate),
            (Fate.GARBAGE, knobs.garbage_rate),
            (Fate.RESET, knobs.reset_rate),
            (Fate.CRASH, knobs.crash_rate),
        ):
            edge += rate
            if draw < edge:
                fate = candidate
                break
        final = ChargeState.SUCCEEDED if rng.random() < knobs.success_rate else ChargeState.FAILED
        partial = rng.random() < knobs.partial_rate
        if final is ChargeState.SUCCEEDED and partial and partial_possible and self.front.supports_partial:
            final = ChargeState.PARTIAL
        copies = 1
        if rng.random() < knobs.callback_drop_rate:
            copies = 0
        elif rng.random() < knobs.callback_duplicate_rate:
            copies = 2
        return _Plan(
            fate=fate,
            final=final,
            delivered_share=rng.randint(1, 3),
            garbage_kind=rng.randrange(_GARBAGE_KINDS),
            callback_copies=copies,
            result_after=knobs.result_after,
            callback_delay=knobs.callback_delay,
            # Drawn last and only when enabled, so seeds that never use them tell the same stories.
            lagging=_chance(rng, knobs.lagging_rate),
            lag_for=knobs.lag_for,
            forged=_chance(rng, knobs.forged_callback_rate),
            refuse_for=knobs.refuse_for,
        )

    async def _finish(self, upstream_order_id: str, plan: _Plan) -> None:
        await asyncio.sleep(plan.result_after)
        entry = self.ledger[upstream_order_id]
        delivered = None
        if plan.final is ChargeState.PARTIAL and entry.face_value_cents is not None:
            delivered = entry.face_value_cents * entry.quantity * plan.delivered_share // 4
        entry = self.ledger.update(
            upstream_order_id, state=plan.final, finished_at=self._clock.now(), delivered_cents=delivered
        )
        self.account.refund(_refund_cents(entry))
        url = entry.notify_url or self.callback_url
        if url is None or (plan.callback_copies == 0 and not plan.forged):
            return
        if plan.callback_delay > 0:
            await asyncio.sleep(plan.callback_delay)
        if plan.forged:
            # Ahead of the real report, as an impostor who wants to be believed first would send them.
            for forged in self.front.forged_callbacks(entry, url):
                delivery = await self._courier.deliver(
                    forged,
                    self.front.acknowledged,
                    on_attempt=lambda: self._count(upstream_order_id, forged_sent=1),
                    attempts=1,
                )
                if delivery.acknowledged:
                    self._count(upstream_order_id, forged_acknowledged=1)
        request = self.front.callback(entry, url)
        for _ in range(plan.callback_copies):
            delivery = await self._courier.deliver(
                request, self.front.acknowledged, on_attempt=lambda: self._count(upstream_order_id, sent=1)
            )
            if delivery.acknowledged:
                self._count(upstream_order_id, acknowledged=1)

    def _count(
        self,
        upstream_order_id: str,
        *,
        sent: int = 0,
        acknowledged: int = 0,
        forged_sent: int = 0,
        forged_acknowledged: int = 0,
    ) -> None:
        entry = self.ledger.get(upstream_order_id)
        if entry is None:
            return  # settled long ago and forgotten (Ledger's max_settled): nothing left to count on
        self.ledger.update(
            upstream_order_id,
            callbacks_sent=entry.callbacks_sent + sent,
            callbacks_acknowledged=entry.callbacks_acknowledged + acknowledged,
            forged_callbacks_sent=entry.forged_callbacks_sent + forged_sent,
            forged_callbacks_acknowledged=entry.forged_callbacks_acknowledged + forged_acknowledged,
        )

    def _garbage(self, entry: LedgerEntry, kind: int) -> HttpReply:
        if kind == 0:
            honest = self.front.submit_reply(entry)
            return replace(honest, body=honest.body[: len(honest.body) // 2])
        if kind == 1:
            return reply(200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>")
        return reply(200, "application/json", b"")

    def _rejection(self, refusal: Refusal, upstream_order_id: str) -> HttpReply:
        return self.front.rejection_reply(
            Rejection(refusal=refusal, operation=Operation.SUBMIT, upstream_order_ids=(upstream_order_id,))
        )

    def _throttled(self, now: float, knobs: SimulateConfig) -> bool:
        """Sliding one-second window over admitted requests; throttled ones do not count."""
        window = self._admitted
        while window and window[0] <= now - 1.0:
            window.popleft()
        if 0 < knobs.max_requests_per_second <= len(window):
            return True
        window.append(now)
        return False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._failures.append(error)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        incoming = Incoming(
            method=request.method,
            path=request.path,
            query_string=request.rel_url.raw_query_string,
            headers=request.headers,
            body=await request.read(),
        )
        answer = await self.respond(incoming)
        match answer:
            case HttpReply():
                return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
            case Silence.HANG:
                await self._released.wait()
                # Only reached at shutdown, when whoever sent the request has long given up.
                raise web.HTTPServiceUnavailable
            case Silence.RESET | Silence.CRASH:
                reset(request.transport)  # a crash has reset it already, unless nothing listened
                # Never written: aiohttp drops a response for a closed connection without a word.
                return web.Response(status=204)
            case _:
                assert_never(answer)

    async def _context(self, app: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()

    async def _release_hung(self, app: web.Application) -> None:
        self._released.set()


SIMULATOR: Final = web.AppKey("simulator", Simulator)
"""The simulator behind an app, for whoever holds only the app."""


def _cost_cents(face_value_cents: int | None, quantity: int) -> int | None:
    """What the supplier charges for a submit; None when neither request nor catalogue tells the value."""
    if face_value_cents is None:
        return None
    return round(face_value_cents * quantity * PRICE_RATIO)


def _refund_cents(entry: LedgerEntry) -> int:
    """What a final entry gives back to the balance: all of a failure, the undelivered share of a partial."""
    cost = entry.cost_cents or 0
    if entry.state is ChargeState.FAILED:
        return cost
    if entry.state is ChargeState.PARTIAL and entry.face_value_cents and entry.delivered_cents is not None:
        value = entry.face_value_cents * entry.quantity
        return cost - cost * entry.delivered_cents // value
    return 0


def _operation(reading: Reading) -> Operation:
    match reading:
        case SubmitRequest():
            return Operation.SUBMIT
        case QueryRequest():
            return Operation.QUERY
        case BalanceRequest():
            return Operation.BALANCE
        case Rejection():
            return reading.operation


def _chance(rng: random.Random, rate: float) -> bool:
    """True with probability `rate`; draws nothing when the rate is 0, to keep older seeds' stories."""
    return rate > 0 and rng.random() < rate


def _ids(reading: Reading) -> tuple[str, ...]:
    if isinstance(reading, SubmitRequest):
        return (reading.upstream_order_id,)
    if isinstance(reading, BalanceRequest):
        return ()
    return reading.upstream_order_ids
