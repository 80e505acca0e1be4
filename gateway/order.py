"""The order and its attempts as values: statuses, reasons, and their stored form.

Transitions live in `lifecycle.py`, what shops and operators see in `views.py`; this module only
says what an order is and how it is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from adapters.interface import Outcome
from gateway.mobile import AccountInfo, Province


class OrderStatus(StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PARTIAL = "partial"

    @property
    def final(self) -> bool:
        return self is not OrderStatus.PROCESSING


class Reason(StrEnum):
    """Machine-readable reason beside the status (CONTRACT.md §1)."""

    AWAITING_SUPPLIER = "awaiting_supplier"
    OUTCOME_UNKNOWN = "outcome_unknown"
    MANUAL_REVIEW = "manual_review"
    # Every offer was used up and nothing was charged: kept for an operator (压单) until
    # `orders.hold_for` passes, then failed (CONTRACT.md §10).
    HELD = "held"
    ACCOUNT_INVALID = "account_invalid"
    SUPPLIER_FAILED = "supplier_failed"
    NO_SUPPLIER_AVAILABLE = "no_supplier_available"
    RESOLVED_BY_OPERATOR = "resolved_by_operator"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try of an order at one supplier, under its own upstream order id."""

    supplier: str
    sku: str
    upstream_order_id: str
    cost_cents: int
    started_at: float
    # Written as `unknown` before the request leaves: a crash mid-send must be reconciled.
    outcome: Outcome = Outcome.UNKNOWN
    code: str | None = None
    message: str | None = None
    duration_ms: int | None = None
    supplier_order_id: str | None = None
    delivered_cents: int | None = None
    replied: bool = False  # the supplier answered the submit (or a query/callback settled it)
    # The supplier said it holds this order (accepted it, gave its own id, refused a duplicate id,
    # answered with a code of its own, or called back): a later "not found" is a lagging replica
    # or a capped reply, never proof that nothing was charged.
    acknowledged: bool = False
    submit_ended_at: float | None = None  # when the submit's exchange ended; "not found" grace counts from it
    detail: str | None = None  # what went wrong, for operators only: may quote the supplier's bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """A report that contradicts what the order knows; kept for operators, never applied.

    Repeats of one kind about one attempt are one incident with a count, so a supplier (or an
    attacker) replaying a report cannot grow the order.
    """

    at: float
    kind: str
    detail: str
    upstream_order_id: str | None = None
    repeats: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One POST of the order to the shop's notify_url."""

    at: float
    status: int | None  # the shop's HTTP status; None when no answer came
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """The shop's notification of a final order: kept in the order, so it is saved with the final state.

    `due_at` is when the next POST may start (None: delivered, given up, or nothing to send); while a
    POST is under way it holds that POST's lease expiry, so no other worker sends it meanwhile.
    """

    due_at: float | None
    attempts: int = 0
    delivered_at: float | None = None
    gave_up: bool = False
    history: tuple[Delivery, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """The shop's request, validated: what idempotency compares."""

    order_id: str
    product: str
    account: str
    quantity: int
    notify_url: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    uid: str
    shop: str
    request: OrderRequest
    face_value_cents: int
    created_at: float
    updated_at: float
    status: OrderStatus = OrderStatus.PROCESSING
    reason: Reason | None = Reason.AWAITING_SUPPLIER
    message: str | None = None
    attempts: tuple[Attempt, ...] = ()
    incidents: tuple[Incident, ...] = ()
    notification: Notification | None = None
    # Carrier and province of a mobile_cn account, looked up once at intake and kept: views, events
    # and failover read it here, never look again. None for other account kinds (and older orders).
    account_info: AccountInfo | None = None
    # When the reconciler should next look at this processing order (see schedule.py); stores index
    # it and hand due orders out under a claim. None once final.
    check_at: float | None = None
    # When the order was last held (reason `held`): it fails `orders.hold_for` after. None otherwise.
    held_at: float | None = None
    version: int = 0  # bumped on every save; stores refuse a save from a stale version

    @property
    def order_id(self) -> str:
        return self.request.order_id

    @property
    def province(self) -> Province | None:
        """The account's province as routing needs it; None when unknown or not a mobile number."""
        return self.account_info.province if self.account_info is not None else None

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def check_time(self) -> float:
        """`check_at` as stores index it: an open order that was never scheduled is due at once."""
        return 0.0 if self.check_at is None else self.check_at

    @property
    def deciding_attempt(self) -> Attempt | None:
        """The attempt whose supplier delivered (or last tried), shown as the order's supplier."""
        for attempt in reversed(self.attempts):
            if attempt.outcome in (Outcome.SUCCEEDED, Outcome.PARTIAL):
                return attempt
        return self.last_attempt


MAX_ATTEMPTS_PER_ORDER = 99  # the two digits an upstream order id keeps for its attempt number


def upstream_order_id(order_uid: str, attempt_number: int) -> str:
    """`<order uid><2-digit attempt>` (protocols/README.md)."""
    return f"{order_uid}{attempt_number:02d}"


def order_uid_of(upstream_id: str) -> str:
    return upstream_id[:-2]


def to_document(order: Order) -> dict[str, Any]:
    """The stored form: every field, plain JSON types, stable across versions of the code."""
    r = order.request
    return {
        "uid": order.uid,
        "shop": order.shop,
        "order_id": r.order_id,
        "product": r.product,
        "account": r.account,
        "quantity": r.quantity,
        "notify_url": r.notify_url,
        "face_value_cents": order.face_value_cents,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "status": order.status.value,
        "reason": order.reason.value if order.reason else None,
        "message": order.message,
        "version": order.version,
        "attempts": [
            {
                "supplier": a.supplier,
                "sku": a.sku,
                "upstream_order_id": a.upstream_order_id,
                "cost_cents": a.cost_cents,
                "started_at": a.started_at,
                "outcome": a.outcome.value,
                "code": a.code,
                "message": a.message,
                "duration_ms": a.duration_ms,
                "supplier_order_id": a.supplier_order_id,
                "delivered_cents": a.delivered_cents,
                "replied": a.replied,
                "acknowledged": a.acknowledged,
                "submit_ended_at": a.submit_ended_at,
                "detail": a.detail,
            }
            for a in order.attempts
        ],
        "incidents": [
            {
                "at": i.at,
                "kind": i.kind,
                "detail": i.detail,
                "upstream_order_id": i.upstream_order_id,
                "repeats": i.repeats,
            }
            for i in order.incidents
        ],
        "notification": _notification_document(order.notification),
        "check_at": order.check_at,
        "held_at": order.held_at,
        "account_info": order.account_info.as_json() if order.account_info is not None else None,
    }


def _notification_document(notification: Notification | None) -> dict[str, Any] | None:
    if notification is None:
        return None
    return {
        "due_at": notification.due_at,
        "attempts": notification.attempts,
        "delivered_at": notification.delivered_at,
        "gave_up": notification.gave_up,
        "history": [
            {"at": d.at, "status": d.status, "error": d.error, "duration_ms": d.duration_ms}
            for d in notification.history
        ],
    }


def _notification_from(doc: Mapping[str, Any] | None) -> Notification | None:
    if doc is None:
        return None
    return Notification(
        due_at=doc["due_at"],
        attempts=doc["attempts"],
        delivered_at=doc["delivered_at"],
        gave_up=doc["gave_up"],
        history=tuple(
            Delivery(at=d["at"], status=d["status"], error=d["error"], duration_ms=d["duration_ms"])
            for d in doc["history"]
        ),
    )


def from_document(doc: Mapping[str, Any]) -> Order:
    return Order(
        uid=doc["uid"],
        shop=doc["shop"],
        request=OrderRequest(
            order_id=doc["order_id"],
            product=doc["product"],
            account=doc["account"],
            quantity=doc["quantity"],
            notify_url=doc["notify_url"],
        ),
        face_value_cents=doc["face_value_cents"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        status=OrderStatus(doc["status"]),
        reason=Reason(doc["reason"]) if doc["reason"] else None,
        message=doc["message"],
        version=doc["version"],
        attempts=tuple(
            Attempt(
                supplier=a["supplier"],
                sku=a["sku"],
                upstream_order_id=a["upstream_order_id"],
                cost_cents=a["cost_cents"],
                started_at=a["started_at"],
                outcome=Outcome(a["outcome"]),
                code=a["code"],
                message=a["message"],
                duration_ms=a["duration_ms"],
                supplier_order_id=a["supplier_order_id"],
                delivered_cents=a["delivered_cents"],
                replied=a["replied"],
                # Documents written before these fields existed read as "not known": the safe side.
                acknowledged=a.get("acknowledged", False),
                submit_ended_at=a.get("submit_ended_at"),
                detail=a.get("detail"),
            )
            for a in doc["attempts"]
        ),
        incidents=tuple(
            Incident(
                at=i["at"],
                kind=i["kind"],
                detail=i["detail"],
                upstream_order_id=i.get("upstream_order_id"),
                repeats=i.get("repeats", 1),
            )
            for i in doc["incidents"]
        ),
        notification=_notification_from(doc.get("notification")),
        # Written before the lookup existed: not known, and never looked up afterwards.
        account_info=AccountInfo.from_json(info) if (info := doc.get("account_info")) is not None else None,
        # Written before checks were scheduled: due now, so the next sweep looks and reschedules it.
        check_at=doc.get("check_at", 0.0 if doc["status"] == OrderStatus.PROCESSING.value else None),
        held_at=doc.get("held_at"),
    )
