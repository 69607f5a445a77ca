"""The REST client users import: `TaskQueueClient` (sync) and `AsyncTaskQueueClient` (async).

Owns the mapping from Python calls to the broker's REST routes and back, and from the broker's
error answers to the `TaskQueueError` hierarchy. Every route is described once, as a `Call`
(what request to send, which statuses succeed, how to parse the body); the two clients only
send it. The one thing not to break: sync and async share that description, so they can never
disagree about a route, and no broker error escapes as anything but a `TaskQueueError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tq_client.models import (
    MAX_RETRIES_DEFAULT,
    PRIORITY_DEFAULT,
    TIMEOUT_SECONDS_DEFAULT,
    CreatedKey,
    CreateKeyRequest,
    Health,
    KeyInfo,
    QueueDepth,
    Stats,
    SubmitBatchRequest,
    SubmitBatchResponse,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskDetail,
    TaskStatus,
    TaskSummary,
    WorkerInfo,
)

DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "tq-client/0.1"
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# `list` is a method name on the clients, so their annotations use these aliases.
TaskSummaries = list[TaskSummary]
Submitted = list[SubmitTaskResponse]
Workers = list[WorkerInfo]
Keys = list[KeyInfo]


# --- errors -------------------------------------------------------------------------------


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
    message = _error_message(response)
    if response.status_code == 429:
        return RateLimited(429, message, _retry_after(response))
    cls = ERROR_BY_STATUS.get(response.status_code, TaskQueueError)
    return cls(response.status_code, message)


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip()[:200] or response.reason_phrase or "error"


def _retry_after(response: httpx.Response) -> float | None:
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


# --- the shared core: one `Call` per route ------------------------------------------------


@dataclass(frozen=True)
class Call(Generic[T]):
    """One REST call: the request to send, the statuses that succeed, and the body parser."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    ok: frozenset[int] = frozenset({200})
    params: tuple[tuple[str, str], ...] = ()
    body: BaseModel | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = dict(self.headers)
        content = None
        if self.body is not None:
            content = self.body.model_dump_json(exclude_none=True).encode()
            headers["Content-Type"] = "application/json"
        return http.build_request(
            self.method,
            self.path,
            params=self.params,
            content=content,
            headers=headers,
        )

    def result(self, response: httpx.Response) -> T:
        if response.status_code not in self.ok:
            raise error_from_response(response)
        try:
            return self.parse(response)
        except (ValidationError, ValueError) as exc:
            raise TaskQueueError(
                response.status_code, f"unexpected answer from the broker: {exc}"
            ) from exc


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate_json(response.content)


def _models(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]
    return lambda response: list(adapter.validate_json(response.content))


def _nothing(response: httpx.Response) -> None:
    return None


def _health(response: httpx.Response) -> Health:
    try:
        return Health.model_validate_json(response.content)
    except ValidationError:
        # A 503 from something in front of the broker is not the broker's degraded report.
        raise error_from_response(response) from None


def _build(cls: type[M], **fields: Any) -> M:
    """A wire model from call arguments; invalid input fails here, before anything is sent."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise InvalidRequest(None, problems) from None


def _segment(value: UUID | str) -> str:
    return quote(str(value), safe="")


def submit_call(
    task_type: str,
    payload: bytes,
    priority: int,
    schedule_at: datetime | None,
    timeout_seconds: int,
    max_retries: int,
    idempotency_key: str | None,
) -> Call[SubmitTaskResponse]:
    body = _build(
        SubmitTaskRequest,
        task_type=task_type,
        payload=payload,
        priority=priority,
        schedule_at=schedule_at,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
    )
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call(
        "POST", "/api/v1/tasks", _model(SubmitTaskResponse), frozenset({200, 201}),
        body=body, headers=headers,
    )  # fmt: skip


def submit_batch_call(tasks: Sequence[SubmitTaskRequest]) -> Call[Submitted]:
    body = _build(SubmitBatchRequest, tasks=list(tasks))

    def parse(response: httpx.Response) -> Submitted:
        return SubmitBatchResponse.model_validate_json(response.content).tasks

    return Call("POST", "/api/v1/tasks/batch", parse, frozenset({201}), body=body)


def list_call(
    status: TaskStatus | str | None, task_type: str | None, limit: int | None, offset: int | None
) -> Call[TaskSummaries]:
    query = {"status": status, "task_type": task_type, "limit": limit, "offset": offset}
    params = tuple((name, str(value)) for name, value in query.items() if value is not None)
    return Call("GET", "/api/v1/tasks", _models(TaskSummary), params=params)


def queue_depth_call(task_types: Iterable[str]) -> Call[QueueDepth]:
    params = tuple(("task_type", name) for name in task_types)
    return Call("GET", "/api/v1/queue-depth", _model(QueueDepth), params=params)


def create_key_call(
    name: str, permissions: Sequence[str], rate_limit: float | None, burst: int | None
) -> Call[CreatedKey]:
    body = _build(
        CreateKeyRequest,
        name=name,
        permissions=list(permissions),
        rate_limit=rate_limit,
        burst=burst,
    )
    return Call("POST", "/api/v1/keys", _model(CreatedKey), frozenset({201}), body=body)


def get_call(task_id: UUID | str) -> Call[TaskDetail]:
    return Call("GET", f"/api/v1/tasks/{_segment(task_id)}", _model(TaskDetail))


def cancel_call(task_id: UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/tasks/{_segment(task_id)}", _nothing, frozenset({204}))


def requeue_call(task_id: UUID | str) -> Call[SubmitTaskResponse]:
    path = f"/api/v1/tasks/{_segment(task_id)}/requeue"
    return Call("POST", path, _model(SubmitTaskResponse))


def revoke_key_call(key_id: UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/keys/{_segment(key_id)}", _nothing, frozenset({204}))


STATS = Call("GET", "/api/v1/stats", _model(Stats))
WORKERS = Call("GET", "/api/v1/workers", _models(WorkerInfo))
HEALTH = Call("GET", "/health", _health, frozenset({200, 503}))
LIST_KEYS = Call("GET", "/api/v1/keys", _models(KeyInfo))


def client_options(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


# --- the two clients: each method sends its route's `Call` --------------------------------


class TaskQueueClient:
    """Blocking client over `httpx.Client`; use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(**client_options(base_url, api_key, timeout), transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.send(call.request(self._http))
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise transport_error(self.base_url, exc) from exc
        return call.result(response)

    def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int = TIMEOUT_SECONDS_DEFAULT,
        max_retries: int = MAX_RETRIES_DEFAULT,
        idempotency_key: str | None = None,
    ) -> SubmitTaskResponse:
        """Submit one task; a repeated `idempotency_key` with the same body returns the first."""
        return self._send(
            submit_call(
                task_type,
                payload,
                priority,
                schedule_at,
                timeout_seconds,
                max_retries,
                idempotency_key,
            )
        )

    def submit_batch(self, tasks: Sequence[SubmitTaskRequest]) -> Submitted:
        """Submit 1-1000 tasks, all or none; answers in request order."""
        return self._send(submit_batch_call(tasks))

    def get(self, task_id: UUID | str) -> TaskDetail:
        return self._send(get_call(task_id))

    def list(
        self,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> TaskSummaries:
        """Tasks newest first; the broker's default limit is 100."""
        return self._send(list_call(status, task_type, limit, offset))

    def cancel(self, task_id: UUID | str) -> None:
        """Cancel a pending (or retry-waiting) task; `Conflict` once it started."""
        self._send(cancel_call(task_id))

    def requeue(self, task_id: UUID | str) -> SubmitTaskResponse:
        """Move a dead-lettered task back to pending (admin)."""
        return self._send(requeue_call(task_id))

    def stats(self) -> Stats:
        return self._send(STATS)

    def workers(self) -> Workers:
        return self._send(WORKERS)

    def health(self) -> Health:
        """The broker's health; a degraded broker (503) is returned, not raised."""
        return self._send(HEALTH)

    def queue_depth(self, task_types: Iterable[str]) -> QueueDepth:
        return self._send(queue_depth_call(task_types))

    def create_key(
        self,
        name: str,
        permissions: Sequence[str],
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> CreatedKey:
        """Create an API key (admin); the answer's `key` is the only copy of the secret."""
        return self._send(create_key_call(name, permissions, rate_limit, burst))

    def list_keys(self) -> Keys:
        return self._send(LIST_KEYS)

    def revoke_key(self, key_id: UUID | str) -> None:
        self._send(revoke_key_call(key_id))


class AsyncTaskQueueClient:
    """The same API over `httpx.AsyncClient`; use `async with` or `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        options = client_options(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(**options, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.send(call.request(self._http))
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise transport_error(self.base_url, exc) from exc
        return call.result(response)

    async def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int = TIMEOUT_SECONDS_DEFAULT,
        max_retries: int = MAX_RETRIES_DEFAULT,
        idempotency_key: str | None = None,
    ) -> SubmitTaskResponse:
        """Submit one task; a repeated `idempotency_key` with the same body returns the first."""
        return await self._send(
            submit_call(
                task_type,
                payload,
                priority,
                schedule_at,
                timeout_seconds,
                max_retries,
                idempotency_key,
            )
        )

    async def submit_batch(self, tasks: Sequence[SubmitTaskRequest]) -> Submitted:
        return await self._send(submit_batch_call(tasks))

    async def get(self, task_id: UUID | str) -> TaskDetail:
        return await self._send(get_call(task_id))

    async def list(
        self,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> TaskSummaries:
        return await self._send(list_call(status, task_type, limit, offset))

    async def cancel(self, task_id: UUID | str) -> None:
        await self._send(cancel_call(task_id))

    async def requeue(self, task_id: UUID | str) -> SubmitTaskResponse:
        return await self._send(requeue_call(task_id))

    async def stats(self) -> Stats:
        return await self._send(STATS)

    async def workers(self) -> Workers:
        return await self._send(WORKERS)

    async def health(self) -> Health:
        return await self._send(HEALTH)

    async def queue_depth(self, task_types: Iterable[str]) -> QueueDepth:
        return await self._send(queue_depth_call(task_types))

    async def create_key(
        self,
        name: str,
        permissions: Sequence[str],
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> CreatedKey:
        return await self._send(create_key_call(name, permissions, rate_limit, burst))

    async def list_keys(self) -> Keys:
        return await self._send(LIST_KEYS)

    async def revoke_key(self, key_id: UUID | str) -> None:
        await self._send(revoke_key_call(key_id))
