"""Wire models of the worker protocol: register, heartbeat, claim, complete, fail, release.

The contract in shared/spec/API.md is silent on how workers talk to the broker; this is ours,
documented in the broker's OpenAPI. The one thing not to break: every operation on a task a
worker holds carries the lease token of its claim, and the broker ignores (409, or `rejected`)
anything with a token that is no longer current.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from tq_client.models import Base64Bytes, RequestModel, TaskType, WireModel

WORKER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"
WorkerId = Annotated[StrictStr, Field(pattern=WORKER_ID_PATTERN)]
BATCH_MAX = 1000
Number = StrictFloat | StrictInt
ERROR_MAX_CHARS = 16_384  # FailedTask.error: type, message and a bounded traceback
RETRY_DELAY_MAX_SECONDS = 86_400


class TaskTypeOptions(RequestModel):
    """A worker's defaults for one task type, applied by the broker to submits that omit them.

    Conflict rule: the latest registration that lists the type in `task_types` sets its
    defaults, on every replica: its entry here (a field left None: the contract's default), or,
    with no entry, the contract's defaults. So what the most recently (re)started worker of a
    type says is what applies, and removing an option takes effect at the next registration.
    """

    max_retries: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=86400)] | None = None


class RegisterWorkerRequest(RequestModel):
    """POST /api/v1/workers. Ids are unique per process: `worker-<host>-<pid>-<random>`."""

    worker_id: WorkerId
    task_types: Annotated[list[TaskType], Field(min_length=1, max_length=100)]
    concurrency: Annotated[StrictInt, Field(ge=1, le=10_000)]
    # Claimed tasks it may hold beyond `concurrency`; unset: as many as `concurrency`. A worker
    # holds at most concurrency + prefetch leases, and a heartbeat renews at most that many.
    prefetch: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = None
    # Per-type defaults (keys among task_types): see TaskTypeOptions.
    task_options: Annotated[dict[TaskType, TaskTypeOptions], Field(max_length=100)] = {}

    @model_validator(mode="after")
    def _options_for_registered_types(self) -> RegisterWorkerRequest:
        unknown = sorted(set(self.task_options) - set(self.task_types))
        if unknown:
            raise ValueError(f"task_options names task types not in task_types: {unknown}")
        return self


PROGRESS_MESSAGE_MAX = 500  # characters of a progress message
# Progress reports per heartbeat: a worker with more changed handlers sends the rest with the
# next beat. Bounded so that a full list of long messages still fits the heartbeat's body cap.
PROGRESS_PER_HEARTBEAT_MAX = 1_000
ABORT_GRACE_SECONDS_DEFAULT = 10.0


class RegisterWorkerResponse(WireModel):
    worker_id: str
    heartbeat_interval_seconds: float
    lease_ttl_seconds: float
    claim_wait_max_seconds: float
    # An aborted handler gets this long to stop before the worker abandons it.
    abort_grace_seconds: float = ABORT_GRACE_SECONDS_DEFAULT


class Lease(RequestModel):
    task_id: UUID
    lease_token: UUID


class ProgressReport(RequestModel):
    """A handler's latest progress on a task the heartbeat renews (others are ignored)."""

    task_id: UUID
    fraction: Annotated[Number, Field(ge=0, le=1, allow_inf_nan=False)]
    message: Annotated[StrictStr, Field(max_length=PROGRESS_MESSAGE_MAX)] | None = None


class HeartbeatRequest(RequestModel):
    """POST /api/v1/workers/{worker_id}/heartbeat: liveness, load, and the leases to renew."""

    cpu_usage_percent: Annotated[Number, Field(ge=0, le=100_000)] = 0.0
    memory_usage_mb: Annotated[Number, Field(ge=0, le=10_000_000)] = 0.0
    current_tasks: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 0
    leases: Annotated[list[Lease], Field(max_length=10_000)] = []
    # Progress reported since the last heartbeat, at most one per task (the latest).
    progress: Annotated[list[ProgressReport], Field(max_length=PROGRESS_PER_HEARTBEAT_MAX)] = []


class HeartbeatResponse(WireModel):
    renewed: list[UUID]
    # Leases that are no longer this worker's (rescued, cancelled, finished): stop working on
    # them; any result reported for them will be rejected.
    abandon: list[UUID]
    # Renewed tasks that were asked to abort: stop them (ctx.cancelled, CancelledError), then
    # report them; they end cancelled whatever is reported.
    abort: list[UUID] = []


class ClaimRequest(RequestModel):
    """POST /api/v1/tasks/claim: up to max_tasks ready tasks of the worker's registered types."""

    worker_id: WorkerId
    max_tasks: Annotated[StrictInt, Field(ge=1, le=BATCH_MAX)] = 1
    # Long-poll: with nothing ready, wait up to this long for a task to become ready.
    wait_seconds: Annotated[Number, Field(ge=0, le=60)] = 0.0


class ClaimedTask(WireModel):
    task_id: UUID
    task_type: str
    payload: Base64Bytes
    priority: int
    lease_token: UUID
    lease_expires_at: datetime
    timeout_seconds: int
    retry_count: int
    max_retries: int


class ClaimResponse(WireModel):
    tasks: list[ClaimedTask]


class CompletedTask(RequestModel):
    task_id: UUID
    lease_token: UUID
    result: Base64Bytes = b""


class FailedTask(RequestModel):
    task_id: UUID
    lease_token: UUID
    # What the worker formats: exception type, message and a bounded traceback; stored as sent.
    error: Annotated[StrictStr, Field(max_length=ERROR_MAX_CHARS)]
    # False: dead-letter now, whatever retries are left (the handler knows it is hopeless).
    retryable: StrictBool = True
    # The worker's backoff for this type: retry after this long instead of the broker's
    # default backoff (ignored when no retry is left or retryable is false).
    retry_delay_seconds: Annotated[Number, Field(ge=0, le=RETRY_DELAY_MAX_SECONDS)] | None = None


class CompleteRequest(RequestModel):
    """POST /api/v1/tasks/complete."""

    worker_id: WorkerId
    tasks: Annotated[list[CompletedTask], Field(min_length=1, max_length=BATCH_MAX)]


class FailRequest(RequestModel):
    """POST /api/v1/tasks/fail: each counts as an attempt; retried after a backoff or dead."""

    worker_id: WorkerId
    tasks: Annotated[list[FailedTask], Field(min_length=1, max_length=BATCH_MAX)]


class ReleaseRequest(RequestModel):
    """POST /api/v1/tasks/release: hand back claimed tasks that never started (no attempt)."""

    worker_id: WorkerId
    tasks: Annotated[list[Lease], Field(min_length=1, max_length=BATCH_MAX)]


class LeaseOutcome(WireModel):
    """Per-task outcome of a batch. `rejected`: the lease was stale; nothing changed for it.

    When every task of a batch is rejected the broker answers 409 instead.
    """

    accepted: list[UUID]
    rejected: list[UUID]
