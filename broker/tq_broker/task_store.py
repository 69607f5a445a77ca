"""Task and worker operations on PostgreSQL, named noun-first (TaskInsert, TaskCancel, ...).

The one thing not to break: a state change is one conditional statement. Whether a cancel, a
completion or a rescue may happen is decided by its WHERE clause inside PostgreSQL, never by a
read followed by a write in Python.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tq_broker.connector import Connector, Session
from tq_broker.errors import BrokerError, Conflict, NotFound, PayloadTooLarge
from tq_broker.events import EventPublisher
from tq_broker.ids import new_task_id
from tq_broker.ready_announcer import ReadyAnnouncer
from tq_client.models import (
    MAX_RETRIES_DEFAULT,
    TIMEOUT_SECONDS_DEFAULT,
    UNSERVED_TASK_TYPES_MAX,
    AbortTaskResponse,
    QueueDepth,
    QueueDepthByPriority,
    Stats,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskAttempt,
    TaskDetail,
    TaskStatus,
    TaskSummary,
)

PAYLOAD_LIMIT_BYTES_DEFAULT = 1024 * 1024
# A limit a submit omits: the task type's registered default (task_options), else these.
_CONTRACT_DEFAULTS = {
    "timeout_default": TIMEOUT_SECONDS_DEFAULT,
    "max_retries_default": MAX_RETRIES_DEFAULT,
}
Queries = Connector | Session  # both run named statements


@dataclass(frozen=True)
class Submitted:
    task: SubmitTaskResponse
    created: bool  # False when an idempotent repeat returned the earlier task


@dataclass(frozen=True)
class Submitter:
    """Who submits: the scope of its idempotency keys, and its key's cap on waiting tasks."""

    scope: str | None = None  # None: auth off, one scope for all
    key_id: UUID | None = None
    max_pending: int | None = None  # None: no cap (and the task records no key)


ANYONE = Submitter()


class PendingCapReached(BrokerError):
    """The key has as many waiting tasks as it may (429)."""


@dataclass(frozen=True)
class HealthCounts:
    connected_workers: int
    pending_tasks: int


def request_digest(request: SubmitTaskRequest) -> bytes:
    """What makes two submits 'the same request' for an idempotency key."""
    return hashlib.sha256(request.model_dump_json().encode("utf-8")).digest()


class TaskStore:
    def __init__(
        self,
        connector: Connector,
        events: EventPublisher,
        ready: ReadyAnnouncer,
        max_payload_bytes: int = PAYLOAD_LIMIT_BYTES_DEFAULT,
    ) -> None:
        self._db = connector
        self._max_payload_bytes = max_payload_bytes
        self._events = events  # the replica's one publisher: every change passes through it
        self._ready = ready  # wakes waiting claims for what was inserted and committed

    def _check_payload(self, request: SubmitTaskRequest) -> None:
        if len(request.payload) > self._max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {len(request.payload)} bytes decoded; "
                f"the limit is {self._max_payload_bytes}"
            )

    @contextlib.asynccontextmanager
    async def _within_cap(self, submitter: Submitter, adding: int) -> AsyncIterator[Queries]:
        """Where to insert: the pool, or for a capped key a transaction that holds the key's
        lock and has checked that `adding` more tasks stay within its cap."""
        if submitter.max_pending is None or submitter.key_id is None:
            yield self._db
            return
        async with self._db.transaction() as tx:
            await tx.fetch_one("key_pending_lock", {"key_id": submitter.key_id})
            row = await tx.fetch_one(
                "key_pending_count",
                {"key_id": submitter.key_id, "max_pending": submitter.max_pending},
            )
            waiting = int(row["pending"]) if row else 0
            if waiting + adding > submitter.max_pending:
                raise PendingCapReached(
                    f"this API key has {waiting} waiting tasks and may have at most "
                    f"{submitter.max_pending}; submit again once some have started"
                )
            yield tx

    async def task_insert(
        self,
        request: SubmitTaskRequest,
        idempotency_key: str | None = None,
        submitter: Submitter = ANYONE,
    ) -> Submitted:
        """Store a task; with an idempotency key, a repeat within the same scope (API key)
        returns the earlier task. Scopes never contain ':', so 'scope:key' is unambiguous."""
        self._check_payload(request)
        if idempotency_key is not None and submitter.scope is not None:
            idempotency_key = f"{submitter.scope}:{idempotency_key}"
        digest = request_digest(request) if idempotency_key is not None else None
        params = {
            "task_id": new_task_id(),
            "task_type": request.task_type,
            "payload": request.payload,
            "priority": request.priority,
            "run_at": request.schedule_at,
            "timeout_seconds": request.timeout_seconds,
            "max_retries": request.max_retries,
            **_CONTRACT_DEFAULTS,
            "idempotency_key": idempotency_key,
            "request_digest": digest,
            "key_id": submitter.key_id if submitter.max_pending is not None else None,
        }
        try:
            async with self._within_cap(submitter, 1) as db:
                row = await db.fetch_one("task_insert", params)
        except PendingCapReached:
            if idempotency_key is None:
                raise
            row = None  # a repeat of a submit that was stored is answered as before
        if row is not None:
            self._ready.tasks_inserted([row])
            await self._events.publish_rows([row])
            return Submitted(SubmitTaskResponse(task_id=row["task_id"], status=row["status"]), True)
        earlier = await self._db.fetch_one(
            "task_get_by_idempotency_key", {"idempotency_key": idempotency_key}
        )
        if earlier is None and submitter.max_pending is not None:
            raise PendingCapReached(f"this API key may have at most {submitter.max_pending}")
        if earlier is None:  # the earlier task was deleted between the two statements
            raise Conflict("idempotency key was just used by a task that no longer exists")
        if bytes(earlier["request_digest"]) != digest:
            raise Conflict("Idempotency-Key was already used with a different request body")
        return Submitted(
            SubmitTaskResponse(task_id=earlier["task_id"], status=earlier["status"]), False
        )

    async def task_insert_many(
        self, requests: list[SubmitTaskRequest], submitter: Submitter = ANYONE
    ) -> list[SubmitTaskResponse]:
        for request in requests:
            self._check_payload(request)
        ids = [new_task_id() for _ in requests]
        async with self._within_cap(submitter, len(requests)) as db:
            rows = await db.fetch_all(
                "task_insert_many",
                {
                    "task_ids": ids,
                    "task_types": [r.task_type for r in requests],
                    "payloads": [r.payload for r in requests],
                    "priorities": [r.priority for r in requests],
                    "run_ats": [r.schedule_at for r in requests],
                    "timeouts": [r.timeout_seconds for r in requests],
                    "max_retries": [r.max_retries for r in requests],
                    **_CONTRACT_DEFAULTS,
                    "key_id": submitter.key_id if submitter.max_pending is not None else None,
                },
            )
        self._ready.tasks_inserted(rows)
        await self._events.publish_rows(rows)
        return [SubmitTaskResponse(task_id=i, status=TaskStatus.PENDING) for i in ids]

    async def task_get(self, task_id: UUID) -> TaskDetail:
        row = await self._db.fetch_one("task_get", {"task_id": task_id})
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return TaskDetail.model_validate(_progress_column(_bytes_columns(row, "result")))

    async def task_payload(self, task_id: UUID) -> bytes:
        row = await self._db.fetch_one("task_payload", {"task_id": task_id})
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return bytes(row["payload"])

    async def task_attempts(self, task_id: UUID) -> list[TaskAttempt]:
        """Oldest first; at most ATTEMPTS_KEPT (the claim trims older ones)."""
        rows = await self._db.fetch_all("task_attempts", {"task_id": task_id})
        if not rows:
            raise NotFound(f"task {task_id} not found")
        return [TaskAttempt.model_validate(row) for row in rows if row["attempt"] is not None]

    async def task_list(
        self, status: TaskStatus | None, task_type: str | None, limit: int, offset: int
    ) -> list[TaskSummary]:
        rows = await self._db.fetch_all(
            "task_list",
            {
                "status": status.value if status else None,
                "task_type": task_type,
                "limit": limit,
                "offset": offset,
            },
        )
        return [TaskSummary.model_validate(row) for row in rows]

    async def task_cancel(self, task_id: UUID) -> None:
        cancelled = await self._db.fetch_one("task_cancel", {"task_id": task_id})
        if cancelled is not None:
            await self._events.publish_rows([cancelled])
            return
        row = await self._db.fetch_one("task_status", {"task_id": task_id})
        if row is None:
            raise NotFound(f"task {task_id} not found")
        raise Conflict(f"task {task_id} is {row['status']}; only pending tasks can be cancelled")

    async def task_abort(self, task_id: UUID, aborted_by: str) -> AbortTaskResponse:
        """Cancel a waiting task now, or mark a running one for its worker to stop. Repeats
        answer as the first did (who and when are kept); a finished task is a Conflict."""
        row = await self._db.fetch_one("task_abort", {"task_id": task_id, "aborted_by": aborted_by})
        if row is not None:
            await self._events.publish_rows([row], transitions=row["status"] == "cancelled")
            return AbortTaskResponse.model_validate(row)
        current = await self._db.fetch_one("task_status", {"task_id": task_id})
        if current is None:
            raise NotFound(f"task {task_id} not found")
        raise Conflict(f"task {task_id} is {current['status']}; it can no longer be aborted")

    async def stats(self) -> Stats:
        row = await self._db.fetch_one("stats")
        assert row is not None  # an aggregate always returns one row
        return Stats(
            pending_count=row["pending_count"],
            in_progress_count=row["in_progress_count"],
            completed_last_hour=row["completed_last_hour"],
            failed_last_hour=row["failed_last_hour"],
            worker_count=row["worker_count"],
            avg_processing_time_ms=round(row["avg_processing_time_ms"], 3),
            queue_depth_by_priority=QueueDepthByPriority(
                high=row["high"], normal=row["normal"], low=row["low"]
            ),
            scheduled_count=row["scheduled_count"],
        )

    async def health_counts(self) -> HealthCounts:
        row = await self._db.fetch_one("health")
        assert row is not None
        return HealthCounts(row["connected_workers"], row["pending_tasks"])

    async def queue_depth(self, task_types: list[str]) -> QueueDepth:
        row = await self._db.fetch_one(
            "queue_depth", {"task_types": task_types, "unserved_max": UNSERVED_TASK_TYPES_MAX}
        )
        assert row is not None
        return QueueDepth(task_types=task_types, **row)

    async def task_requeue(self, task_id: UUID) -> str:
        """Admin: a dead-lettered task gets a fresh set of attempts."""
        row = await self._db.fetch_one("task_requeue", {"task_id": task_id})
        if row is not None:  # the statement NOTIFYs waiting claims itself
            await self._events.publish_rows([row])
            return str(row["status"])
        current = await self._db.fetch_one("task_status", {"task_id": task_id})
        if current is None:
            raise NotFound(f"task {task_id} not found")
        raise Conflict(
            f"task {task_id} is {current['status']}; only dead_letter tasks can be requeued"
        )

    async def task_requeue_many(
        self, task_type: str | None, task_ids: list[UUID] | None, limit: int
    ) -> tuple[list[UUID], bool]:
        """Admin: requeue up to `limit` matching dead letters in one statement; returns their
        ids and whether matching dead letters remain."""
        params = {"task_type": task_type, "task_ids": task_ids, "limit": limit}
        rows = await self._db.fetch_all("task_requeue_many", params)
        await self._events.publish_rows(rows)
        remaining = await self._db.fetch_one("task_dead_letter_exists", params)
        return [row["task_id"] for row in rows], bool(remaining and remaining["remaining"])


def _progress_column(row: dict[str, Any]) -> dict[str, Any]:
    """The three progress columns as the one `progress` object (or None)."""
    fraction = row.pop("progress_fraction", None)
    message = row.pop("progress_message", None)
    updated_at = row.pop("progress_updated_at", None)
    if fraction is not None:
        row["progress"] = {"fraction": fraction, "message": message, "updated_at": updated_at}
    return row


def _bytes_columns(row: dict[str, Any], *names: str) -> dict[str, Any]:
    """psycopg returns bytea as memoryview; the models want bytes."""
    for name in names:
        if row.get(name) is not None:
            row[name] = bytes(row[name])
    return row
