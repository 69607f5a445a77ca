"""Between protobuf messages and the REST wire models of `tq_client.models`.

Requests become the same pydantic models the REST routes validate, so both APIs accept exactly
the same values; what is wrong raises `InvalidRequest` naming the field.

The one thing not to break: proto3 cannot tell an unset scalar from its zero. The submit
fields with REST defaults (priority, timeout_seconds, max_retries) are `optional` in the proto:
unset takes the REST default, a set value (0 included) is validated as REST validates it.
List `limit` 0 means the REST default (100); empty strings mean "no filter".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError

from tq_broker.errors import InvalidRequest
from tq_broker.events import TaskEvent
from tq_broker.rpc import taskqueue_pb2 as pb
from tq_client.models import (
    TASK_IDS_FILTER_MAX,
    TASK_TYPE_PATTERN,
    AbortTaskResponse,
    Stats,
    SubmitTaskRequest,
    TaskDetail,
    TaskStatus,
    TaskSummary,
)

LIST_LIMIT_DEFAULT = 100  # as GET /api/v1/tasks
LIST_LIMIT_MAX = 1000
LIST_OFFSET_MAX = 1_000_000_000
FILTER_ITEMS_MAX = 100
_STATUSES = sorted(s.value for s in TaskStatus)


@dataclass(frozen=True)
class ListQuery:
    status: TaskStatus | None
    task_type: str | None
    limit: int
    offset: int


@dataclass(frozen=True)
class StreamQuery:
    task_id: UUID | None
    task_types: frozenset[str]
    statuses: frozenset[str]
    task_ids: frozenset[str] = frozenset()  # canonical UUID strings, as events carry them


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


def task_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidRequest("task_id: must be a UUID") from None


def submit_request(message: pb.SubmitTaskRequest) -> SubmitTaskRequest:
    fields: dict[str, Any] = {"task_type": message.task_type, "payload": message.payload}
    if message.HasField("priority"):
        fields["priority"] = message.priority
    if message.HasField("timeout_seconds"):
        fields["timeout_seconds"] = message.timeout_seconds
    if message.HasField("max_retries"):
        fields["max_retries"] = message.max_retries
    if message.HasField("schedule_at"):
        try:
            fields["schedule_at"] = message.schedule_at.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise InvalidRequest("schedule_at: not a valid timestamp") from None
    try:
        return SubmitTaskRequest.model_validate(fields)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


def _task_type(value: str, field: str) -> str:
    if not re.fullmatch(TASK_TYPE_PATTERN, value):
        raise InvalidRequest(f"{field}: must be 1-128 characters of [A-Za-z0-9_.:-]")
    return value


def _status(value: str, field: str) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        raise InvalidRequest(f"{field}: must be one of {', '.join(_STATUSES)}") from None


def list_query(message: pb.ListTasksRequest) -> ListQuery:
    if message.limit > LIST_LIMIT_MAX:
        raise InvalidRequest(f"limit: at most {LIST_LIMIT_MAX}")
    if message.offset > LIST_OFFSET_MAX:
        raise InvalidRequest(f"offset: at most {LIST_OFFSET_MAX}")
    return ListQuery(
        status=_status(message.status, "status") if message.status else None,
        task_type=_task_type(message.task_type, "task_type") if message.task_type else None,
        limit=message.limit or LIST_LIMIT_DEFAULT,
        offset=message.offset,
    )


def _filter(values: Sequence[str], field: str) -> list[str]:
    if len(values) > FILTER_ITEMS_MAX:
        raise InvalidRequest(f"{field}: at most {FILTER_ITEMS_MAX} items")
    return list(values)


def stream_query(message: pb.StreamTaskUpdatesRequest) -> StreamQuery:
    if message.task_id and message.task_ids:
        raise InvalidRequest("give task_id (one task's stream) or task_ids (a filter), not both")
    return StreamQuery(
        task_id=task_id(message.task_id) if message.task_id else None,
        task_types=frozenset(
            _task_type(t, "task_types") for t in _filter(message.task_types, "task_types")
        ),
        statuses=frozenset(
            _status(s, "statuses").value for s in _filter(message.statuses, "statuses")
        ),
        task_ids=_task_ids(message.task_ids),
    )


def _task_ids(values: Sequence[str]) -> frozenset[str]:
    if len(values) > TASK_IDS_FILTER_MAX:
        raise InvalidRequest(f"task_ids: at most {TASK_IDS_FILTER_MAX} task UUIDs")
    try:
        return frozenset(str(UUID(v)) for v in values)
    except ValueError:
        raise InvalidRequest("task_ids: must be task UUIDs") from None


def timestamp(value: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(value)
    return message


def task_message(task: TaskSummary) -> pb.Task:
    """A task; a summary (from a list) leaves result, error, retry_count and worker_id empty."""
    message = pb.Task(
        task_id=str(task.task_id),
        task_type=task.task_type,
        status=task.status.value,
        priority=task.priority,
        created_at=timestamp(task.created_at),
        updated_at=timestamp(task.updated_at),
    )
    if isinstance(task, TaskDetail):
        message.result = task.result or b""
        message.error = task.error or ""
        message.retry_count = task.retry_count
        message.worker_id = task.worker_id or ""
        if task.progress is not None:
            message.progress.CopyFrom(
                pb.Progress(
                    fraction=task.progress.fraction,
                    message=task.progress.message or "",
                    updated_at=timestamp(task.progress.updated_at),
                )
            )
        if task.aborted_at is not None:
            message.aborted_at.CopyFrom(timestamp(task.aborted_at))
            message.aborted_by = task.aborted_by or ""
    return message


def update_message(event: TaskEvent) -> pb.TaskUpdate:
    message = pb.TaskUpdate(
        task_id=event.task_id,
        task_type=event.task_type,
        status=event.status,
        updated_at=timestamp(event_time(event)),
    )
    if event.progress is not None:
        fraction, text, updated_at = event.progress
        message.progress.CopyFrom(
            pb.Progress(
                fraction=fraction,
                message=text or "",
                updated_at=timestamp(datetime.fromisoformat(updated_at)),
            )
        )
    if event.aborted is not None:
        message.aborted_at.CopyFrom(timestamp(datetime.fromisoformat(event.aborted[0])))
        message.aborted_by = event.aborted[1]
    return message


def abort_response(aborted: AbortTaskResponse) -> pb.AbortTaskResponse:
    return pb.AbortTaskResponse(
        task_id=str(aborted.task_id),
        status=aborted.status.value,
        aborted_at=timestamp(aborted.aborted_at),
        aborted_by=aborted.aborted_by,
    )


def event_time(event: TaskEvent) -> datetime:
    return datetime.fromisoformat(event.updated_at)


def stats_message(stats: Stats) -> pb.Stats:
    depth = stats.queue_depth_by_priority
    return pb.Stats(
        pending_count=stats.pending_count,
        in_progress_count=stats.in_progress_count,
        completed_last_hour=stats.completed_last_hour,
        failed_last_hour=stats.failed_last_hour,
        worker_count=stats.worker_count,
        avg_processing_time_ms=stats.avg_processing_time_ms,
        queue_depth_by_priority=pb.QueueDepthByPriority(
            high=depth.high, normal=depth.normal, low=depth.low
        ),
    )
