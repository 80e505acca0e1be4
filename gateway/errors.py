"""The API's error tree: each error carries its HTTP status and contract code; one middleware renders them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar


class ApiError(Exception):
    """An error a client sees as `{"error": {"code", "message", "details"?}}`."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # After answering, close the connection rather than read on (the request is still arriving).
    closes_connection: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class InvalidRequest(ApiError):
    http_status = 400
    code = "invalid_request"


class Unauthenticated(ApiError):
    http_status = 401
    code = "unauthenticated"


class ProductNotAllowed(ApiError):
    http_status = 403
    code = "product_not_allowed"


class Forbidden(ApiError):
    http_status = 403
    code = "forbidden"


class UnknownProduct(ApiError):
    http_status = 404
    code = "unknown_product"


class OrderNotFound(ApiError):
    http_status = 404
    code = "order_not_found"


class NotFound(ApiError):
    http_status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    http_status = 405
    code = "method_not_allowed"


class RequestTimeout(ApiError):
    """The request body did not arrive within the server's bound; what is still coming is not read."""

    http_status = 408
    code = "request_timeout"
    closes_connection = True


class OrderIdConflict(ApiError):
    http_status = 409
    code = "order_id_conflict"


class BodyTooLarge(ApiError):
    http_status = 413
    code = "body_too_large"


class OrderAlreadyFinal(ApiError):
    """An operator tried to resolve an order that is already final: final states never change."""

    http_status = 409
    code = "order_final"


class UnsupportedMediaType(ApiError):
    http_status = 415
    code = "unsupported_media_type"


class InvalidAccount(ApiError):
    http_status = 422
    code = "invalid_account"


class AccountBlocked(ApiError):
    """An operator blocked this account (CONTRACT.md §7)."""

    http_status = 403
    code = "account_blocked"


class DuplicateSuspected(ApiError):
    """A new order_id for an account the shop ordered for moments ago (§7); `allow_duplicate` overrides."""

    http_status = 409
    code = "duplicate_suspected"


class CarrierMismatch(ApiError):
    """The number's prefix belongs to another carrier than the product's (§7)."""

    http_status = 422
    code = "carrier_mismatch"


class AccountLimitExceeded(ApiError):
    """The shop's per-account limit for the China day is reached (§7)."""

    http_status = 429
    code = "account_limit_exceeded"


class RateLimited(ApiError):
    """The shop sends faster than its `rate_limit` (§7); carries Retry-After."""

    http_status = 429
    code = "rate_limited"


class TooManyStreams(ApiError):
    """The shop already holds `shops.*.max_streams` open event streams (CONTRACT.md §8)."""

    http_status = 429
    code = "too_many_streams"


class InternalError(ApiError):
    http_status = 500
    code = "internal_error"


class NoSupplierAvailable(ApiError):
    http_status = 503
    code = "no_supplier_available"


class StoreUnavailable(ApiError):
    """The store cannot record or read now; nothing was done, and the request may be sent again."""

    http_status = 503
    code = "store_unavailable"
    RETRY_AFTER_SECONDS: ClassVar[int] = 5

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, headers=headers or {"Retry-After": str(self.RETRY_AFTER_SECONDS)})


class InvalidConfig(ApiError):
    http_status = 400
    code = "invalid_config"


class UnknownOrder(ApiError):
    """A callback about an upstream id the gateway never sent."""

    http_status = 404
    code = "unknown_order"


class UnsafeResubmit(ApiError):
    """A resubmit while an attempt is open or unknown: it may have charged (CONTRACT.md §10).

    `details` names each such attempt: `supplier`, `upstream_order_id`, `outcome`.
    """

    http_status = 409
    code = "unsafe_resubmit"


class OrderNotFinal(ApiError):
    """A re-notify for an order that is not final yet: the shop is told only of final orders (§10)."""

    http_status = 409
    code = "order_not_final"


class NoNotifyUrl(ApiError):
    """A re-notify for an order placed without a notify_url: there is nowhere to send it (§10)."""

    http_status = 409
    code = "no_notify_url"
