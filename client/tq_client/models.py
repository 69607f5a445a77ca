"""Wire models of the REST contract (`shared/spec/API.md`), shared by broker, workers and clients.

The one thing not to break: these shapes are the user's contract. Field names, defaults and
limits here are what the broker validates against, so a change here is an API change.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

TASK_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
PRIORITY_DEFAULT = 100
TIMEOUT_SECONDS_DEFAULT = 300
MAX_RETRIES_DEFAULT = 3
WAIT_SECONDS_MAX = 60  # GET /api/v1/tasks/{id}?wait=<seconds>: 0 to this
ATTEMPTS_KEPT = 50  # GET /api/v1/tasks/{id}/attempts: the last this many attempts of a task
TASK_IDS_FILTER_MAX = 1000  # task_ids in a WebSocket or gRPC subscription filter
UNSERVED_TASK_TYPES_MAX = 100  # task types listed in QueueDepth.unserved_task_types
HIGH_PRIORITY_MIN = 200  # high >= 200, normal 100-199, low <= 99
NORMAL_PRIORITY_MIN = 100


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.DEAD_LETTER, TaskStatus.CANCELLED})


def decode_base64_strict(value: str) -> bytes:
    """Decode standard base64, refusing anything but its one canonical spelling.

    Python's default decoder drops characters outside the alphabet and accepts non-zero pad
    bits; a payload that does not round-trip is a client bug we report instead of guessing.
    """
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("payload must be valid base64 (standard alphabet, padded)") from exc
    if base64.b64encode(decoded).decode("ascii") != value:
        raise ValueError("payload must be canonical base64 (standard alphabet, padded)")
    return decoded


def _to_payload_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return decode_base64_strict(value)
    raise ValueError("payload must be a base64 string")


def _encode_payload(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _require_rfc3339_string(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string with a time zone")
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_to_payload_bytes),
    PlainSerializer(_encode_payload, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "byte", "description": "base64-encoded bytes"}),
]
"""Bytes that travel as canonical base64 strings."""

Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_require_rfc3339_string),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
TaskType = Annotated[StrictStr, Field(pattern=TASK_TYPE_PATTERN, min_length=1, max_length=128)]


class WireModel(BaseModel):
    """A response: unknown fields are ignored, so a newer broker never breaks an older client."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class RequestModel(WireModel):
    """A request: unknown fields are refused (400), so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SubmitTaskRequest(RequestModel):
    """POST /api/v1/tasks. Unknown fields are rejected."""

    task_type: TaskType
    payload: Base64Bytes = b""
    priority: Annotated[StrictInt, Field(ge=0, le=255)] = PRIORITY_DEFAULT
    schedule_at: Timestamp | None = None
    # Omitted (or null): the default a worker registered for the task type (the latest
    # registration wins), else TIMEOUT_SECONDS_DEFAULT / MAX_RETRIES_DEFAULT. An explicit value
    # always wins. Clients serialize with exclude_none so "omitted" stays omitted.
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=86400)] | None = None
    max_retries: Annotated[StrictInt, Field(ge=0, le=100)] | None = None


class SubmitBatchRequest(RequestModel):
    """POST /api/v1/tasks/batch: all tasks are stored, or none."""

    tasks: Annotated[list[SubmitTaskRequest], Field(min_length=1, max_length=1000)]


class SubmitTaskResponse(WireModel):
    task_id: UUID
    status: TaskStatus


class SubmitBatchResponse(WireModel):
    tasks: list[SubmitTaskResponse]


class TaskSummary(WireModel):
    task_id: UUID
    task_type: str
    status: TaskStatus
    priority: int
    created_at: datetime
    updated_at: datetime


class Progress(WireModel):
    """The handler's last `ctx.progress(fraction, message)` that reached the broker."""

    fraction: float
    message: str | None = None
    updated_at: datetime


class TaskDetail(TaskSummary):
    result: Base64Bytes | None = None
    error: str | None = None
    retry_count: int = 0
    worker_id: str | None = None
    # Beyond the contract's body (None from a broker that predates them): the limits the task
    # runs under, and when it is due (schedule_at, or the next retry after a backoff; for a task
    # that already ran, when it last became due).
    max_retries: int | None = None
    timeout_seconds: int | None = None
    run_at: datetime | None = None
    progress: Progress | None = None
    # Set by POST /api/v1/tasks/{id}/abort: when and by whom (the API key's name). A task with
    # these set that is still in_progress is stopping; it ends cancelled.
    aborted_at: datetime | None = None
    aborted_by: str | None = None


class AbortTaskResponse(WireModel):
    """POST /api/v1/tasks/{id}/abort: `cancelled` at once (200), or `in_progress` and stopping
    (202: its worker hears it on its next heartbeat)."""

    task_id: UUID
    status: TaskStatus
    aborted_at: datetime
    aborted_by: str


class AttemptOutcome(StrEnum):
    """How an attempt ended; None on the wire while it runs."""

    COMPLETED = "completed"
    FAILED = "failed"  # the handler failed (retried or dead-lettered per the task's retries)
    EXPIRED = "expired"  # the lease or the deadline passed: the rescuer took it back
    RELEASED = "released"  # handed back unstarted (drain); not counted as a retry
    CANCELLED = "cancelled"  # the task was cancelled while this attempt held it


class TaskAttempt(WireModel):
    """GET /api/v1/tasks/{task_id}/attempts: one claim of a task, oldest first (the last
    ATTEMPTS_KEPT per task are kept; they are deleted with the task)."""

    attempt: int  # 1 for the first claim
    worker_id: str
    claimed_at: datetime
    finished_at: datetime | None = None
    outcome: AttemptOutcome | None = None
    error: str | None = None


class QueueDepthByPriority(WireModel):
    high: int
    normal: int
    low: int


class Stats(WireModel):
    pending_count: int
    in_progress_count: int
    completed_last_hour: int
    failed_last_hour: int
    worker_count: int
    avg_processing_time_ms: float
    queue_depth_by_priority: QueueDepthByPriority
    # Beyond the contract: waiting tasks not yet due (schedule_at or a retry backoff in the
    # future). pending_count and queue_depth_by_priority count only tasks due now.
    scheduled_count: int = 0


class WorkerStatus(StrEnum):
    ONLINE = "online"  # heartbeating, claiming
    DRAINING = "draining"  # told to stop (SIGTERM or drain): finishes what it holds, claims no more
    OFFLINE = "offline"  # deregistered, or silent past the heartbeat timeout


class WorkerInfo(WireModel):
    worker_id: str
    registered_at: datetime
    last_heartbeat: datetime
    current_tasks: int
    cpu_usage_percent: float
    memory_usage_mb: float
    # Beyond the contract (defaults for a broker that predates them).
    task_types: list[str] = []
    concurrency: int = 0
    status: WorkerStatus = WorkerStatus.ONLINE


class Health(WireModel):
    status: str
    is_leader: bool
    connected_workers: int | None
    pending_tasks: int | None


class ErrorBody(WireModel):
    error: str


def priority_bucket(priority: int) -> str:
    if priority >= HIGH_PRIORITY_MIN:
        return "high"
    if priority >= NORMAL_PRIORITY_MIN:
        return "normal"
    return "low"


PERMISSIONS = (
    "submit_tasks", "read_tasks", "cancel_tasks", "process_tasks", "manage_schedules", "admin",
)  # fmt: skip
PermissionName = Annotated[StrictStr, Field(pattern=rf"^({'|'.join(PERMISSIONS)})$")]


class CreateKeyRequest(RequestModel):
    """POST /api/v1/keys (admin)."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=100, pattern=r"^[\x20-\x7e]+$")]
    permissions: Annotated[list[PermissionName], Field(min_length=1, max_length=len(PERMISSIONS))]
    rate_limit: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1_000_000)] | None = None
    burst: Annotated[StrictInt, Field(ge=1, le=10_000_000)] | None = None
    # Waiting tasks (pending, or failed awaiting a retry) the key may have; past it, 429.
    max_pending: Annotated[StrictInt, Field(ge=1, le=1_000_000_000)] | None = None


class KeyInfo(WireModel):
    """A key as listed: never its secret."""

    key_id: UUID
    name: str
    prefix: str
    permissions: list[str]
    rate_limit: float | None
    burst: int | None
    max_pending: int | None = None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedKey(KeyInfo):
    """The answer to a create: the only time the secret `key` is ever shown."""

    key: str


class WsTicket(WireModel):
    """POST /api/v1/ws-tickets: connect with WS /ws?ticket=<ticket> once, within the time."""

    ticket: str
    expires_in_seconds: float


class QueueDepth(WireModel):
    """GET /api/v1/queue-depth: work of some task types, for autoscalers."""

    task_types: list[str]
    ready: int  # claimable now (pending, or failed past its backoff)
    scheduled: int  # waiting for schedule_at or a retry backoff
    in_progress: int  # claimed by a worker
    # Of the asked task types: those with ready tasks and no online worker registered for them
    # (sorted; at most UNSERVED_TASK_TYPES_MAX).
    unserved_task_types: list[str] = []


REQUEUE_MANY_MAX = 1000


class RequeueManyRequest(RequestModel):
    """POST /api/v1/tasks/requeue (admin): requeue dead letters matching a filter, oldest
    first, at most `limit` per request. No filter: any dead letters."""

    task_type: TaskType | None = None
    task_ids: Annotated[list[UUID], Field(min_length=1, max_length=REQUEUE_MANY_MAX)] | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=REQUEUE_MANY_MAX)] = REQUEUE_MANY_MAX


class RequeueManyResponse(WireModel):
    requeued: list[UUID]  # now pending again
    remaining: bool  # dead letters matching the filter are left (past the limit, or locked)


class TaskPayload(WireModel):
    """GET /api/v1/tasks/{id}/payload: the bytes a task was submitted with."""

    task_id: UUID
    payload: Base64Bytes
