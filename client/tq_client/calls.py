"""The shared core of both clients: one `Call` per REST route — the request to send, the
statuses that succeed, and how to parse the body. The one thing not to break: sync and async
clients only send these, so they can never disagree about a route."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from tq_client.errors import InvalidRequest, TaskQueueError, error_from_response
from tq_client.models import (
    PRIORITY_DEFAULT,
    WAIT_SECONDS_MAX,
    AbortTaskResponse,
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
    TaskAttempt,
    TaskDetail,
    TaskStatus,
    TaskSummary,
    WorkerInfo,
)
from tq_client.payloads import NO_JSON, payload_bytes

DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "tq-client/0.1"
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# `list` is a method name on the clients, so their annotations use these aliases.
TaskSummaries = list[TaskSummary]
Submitted = list[SubmitTaskResponse]
Workers = list[WorkerInfo]
Keys = list[KeyInfo]
Attempts = list[TaskAttempt]


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
    # Seconds the broker may take on purpose (a long-poll) on top of the client's timeout.
    holds_seconds: float = 0.0

    def request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> httpx.Request:
        """`base_url` and `api_key`: per call, for one httpx client that talks to many brokers
        (the operator); the user clients set both once on their httpx client."""
        headers = dict(self.headers)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        content = None
        if self.body is not None:
            content = self.body.model_dump_json(exclude_none=True).encode()
            headers["Content-Type"] = "application/json"
        extra: dict[str, Any] = {}
        if self.holds_seconds:
            base = http.timeout
            extra["timeout"] = httpx.Timeout(
                connect=base.connect,
                read=None if base.read is None else base.read + self.holds_seconds,
                write=base.write,
                pool=base.pool,
            )
        return http.build_request(
            self.method,
            self.path if base_url is None else f"{base_url.rstrip('/')}{self.path}",
            params=self.params,
            content=content,
            headers=headers,
            **extra,
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


def task_request(
    task_type: str,
    payload: bytes = b"",
    *,
    json: Any = NO_JSON,
    priority: int = PRIORITY_DEFAULT,
    schedule_at: datetime | None = None,
    timeout_seconds: int | None = None,
    max_retries: int | None = None,
) -> SubmitTaskRequest:
    """One task for `submit_batch`, with `submit`'s rules: `payload` bytes or `json=` a value
    (TypeError otherwise — the wire model itself would read a str as base64)."""
    return _build(
        SubmitTaskRequest,
        task_type=task_type,
        payload=payload_bytes(payload, json),
        priority=priority,
        schedule_at=schedule_at,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
    )


def submit_call(
    task_type: str,
    payload: object,
    priority: int,
    schedule_at: datetime | None,
    timeout_seconds: int | None,
    max_retries: int | None,
    idempotency_key: str | None,
    json: Any = NO_JSON,
) -> Call[SubmitTaskResponse]:
    """The submit request; a payload that is not bytes raises TypeError here, unsent."""
    body = task_request(
        task_type,
        payload,  # type: ignore[arg-type]  # checked at run time: any object is refused here
        json=json,
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
    name: str,
    permissions: Sequence[str],
    rate_limit: float | None,
    burst: int | None,
    max_pending: int | None = None,
) -> Call[CreatedKey]:
    body = _build(
        CreateKeyRequest,
        name=name,
        permissions=list(permissions),
        rate_limit=rate_limit,
        burst=burst,
        max_pending=max_pending,
    )
    return Call("POST", "/api/v1/keys", _model(CreatedKey), frozenset({201}), body=body)


def get_call(task_id: UUID | str, wait_seconds: float | None = None) -> Call[TaskDetail]:
    """GET a task; with `wait_seconds` (0-60) the broker answers once it is terminal, or then."""
    path = f"/api/v1/tasks/{_segment(task_id)}"
    if wait_seconds is None:
        return Call("GET", path, _model(TaskDetail))
    seconds = min(max(wait_seconds, 0.0), float(WAIT_SECONDS_MAX))
    params = (("wait", f"{seconds:.3f}".rstrip("0").rstrip(".")),)
    return Call("GET", path, _model(TaskDetail), params=params, holds_seconds=seconds)


def attempts_call(task_id: UUID | str) -> Call[Attempts]:
    path = f"/api/v1/tasks/{_segment(task_id)}/attempts"
    return Call("GET", path, _models(TaskAttempt))


def cancel_call(task_id: UUID | str) -> Call[None]:
    return Call("DELETE", f"/api/v1/tasks/{_segment(task_id)}", _nothing, frozenset({204}))


def abort_call(task_id: UUID | str) -> Call[AbortTaskResponse]:
    path = f"/api/v1/tasks/{_segment(task_id)}/abort"
    return Call("POST", path, _model(AbortTaskResponse), frozenset({200, 202}))


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
