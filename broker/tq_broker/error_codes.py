"""Every error the broker reports, with its HTTP status and its gRPC status code: the one table
REST, WebSocket and gRPC answer from, so no interface decides differently.

gRPC codes are names (`grpc.StatusCode[name]`): importing grpc costs half a second, and only
a broker with its gRPC port on needs it.
"""

from __future__ import annotations

from tq_broker.auth import Forbidden, RateLimited, TooManyStreams, Unauthenticated
from tq_broker.errors import (
    BrokerError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
)
from tq_broker.task_store import PendingCapReached
from tq_broker.task_waits import EventFeedUnavailable, TooManyWaiters

ERROR_CODES: dict[type[BrokerError], tuple[int, str]] = {
    InvalidRequest: (400, "INVALID_ARGUMENT"),
    Unauthenticated: (401, "UNAUTHENTICATED"),
    Forbidden: (403, "PERMISSION_DENIED"),
    NotFound: (404, "NOT_FOUND"),
    Conflict: (409, "FAILED_PRECONDITION"),
    PayloadTooLarge: (413, "RESOURCE_EXHAUSTED"),
    RateLimited: (429, "RESOURCE_EXHAUSTED"),
    TooManyStreams: (429, "RESOURCE_EXHAUSTED"),
    PendingCapReached: (429, "RESOURCE_EXHAUSTED"),
    StoreUnavailable: (503, "UNAVAILABLE"),
    TooManyWaiters: (503, "UNAVAILABLE"),
    EventFeedUnavailable: (503, "UNAVAILABLE"),
}
UNEXPECTED = (500, "INTERNAL")


def codes_of(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, gRPC code name) of an error; the most specific class listed wins."""
    for cls in type(exc).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls]
    return UNEXPECTED
