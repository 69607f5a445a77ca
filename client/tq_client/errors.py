"""The client's errors: every broker answer that is not a success, and every transport failure,
becomes one `TaskQueueError` subclass carrying the status and the broker's message."""

from __future__ import annotations

import httpx


class TaskQueueError(Exception):
    """Base of every error the client raises. `status` is None when no HTTP answer came."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class InvalidRequest(TaskQueueError):
    """400, 413 or 415; also raised before sending when arguments fail the wire models."""


class Unauthorized(TaskQueueError):
    """401: missing, malformed, unknown or revoked API key."""


class Forbidden(TaskQueueError):
    """403: the key lacks the permission."""


class NotFound(TaskQueueError):
    """404: no such task or key."""


class Conflict(TaskQueueError):
    """409: not allowed in the current state (or an idempotency key reused)."""


class RateLimited(TaskQueueError):
    """429: over the key's rate limit; `retry_after` is in seconds when the broker said."""

    def __init__(self, status: int | None, message: str, retry_after: float | None) -> None:
        super().__init__(status, message)
        self.retry_after = retry_after


class Unavailable(TaskQueueError):
    """503: the broker cannot reach PostgreSQL."""


class Unreachable(Unavailable):
    """No HTTP answer at all: connection refused, DNS failure, timeout."""


ERROR_BY_STATUS: dict[int, type[TaskQueueError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    503: Unavailable,
}


def error_from_response(response: httpx.Response) -> TaskQueueError:
    """The broker's `{"error": ...}` answer as an exception of the matching class."""
    message = error_message(response)
    if response.status_code == 429:
        return RateLimited(429, message, retry_after(response))
    cls = ERROR_BY_STATUS.get(response.status_code, TaskQueueError)
    return cls(response.status_code, message)


def error_message(response: httpx.Response) -> str:
    """The message of the broker's `{"error": "..."}` body; else the start of whatever came
    (a proxy's HTML page), else the status's reason phrase. Every component reads errors here."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip()[:200] or response.reason_phrase or "error"


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, None when absent or not a number (our broker never sends the
    HTTP-date form)."""
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def transport_error(base_url: str, exc: httpx.HTTPError | httpx.InvalidURL) -> Unreachable:
    """A request that got no answer: the broker is down, unknown, or too slow."""
    if isinstance(exc, httpx.TimeoutException):
        return Unreachable(None, f"broker at {base_url} did not answer in time")
    if isinstance(exc, httpx.ConnectError):
        return Unreachable(None, f"broker unreachable at {base_url}")
    return Unreachable(None, f"broker unreachable at {base_url}: {exc}")
