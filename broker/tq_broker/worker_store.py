"""The worker side of the queue: registration, claims, leases, results.

The one thing not to break: every write to a task a worker holds is conditional on its lease
token and on status = 'in_progress'. A worker that was paused, cut off or rescued can never
overwrite a newer outcome; it gets `rejected` (or a 409) instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tq_broker.auth import Forbidden
from tq_broker.connector import Connector, Session
from tq_broker.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from tq_broker.events import EventPublisher
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.retry_policy import BACKOFF_BASE_SECONDS_DEFAULT, BACKOFF_CAP_SECONDS_DEFAULT
from tq_broker.task_store import PAYLOAD_LIMIT_BYTES_DEFAULT
from tq_client.models import ATTEMPTS_KEPT, WorkerInfo
from tq_client.protocol import (
    ClaimedTask,
    CompletedTask,
    FailedTask,
    HeartbeatRequest,
    HeartbeatResponse,
    Lease,
    LeaseOutcome,
    RegisterWorkerRequest,
    TaskTypeOptions,
)

NO_OPTIONS = TaskTypeOptions()  # a type registered without options: the contract's defaults


@dataclass(frozen=True)
class Caller:
    """Who makes a worker call: the API key (None: the bootstrap admin key, or auth off), and
    whether it may act as any worker (admin, or auth off)."""

    key_id: UUID | None = None
    any_worker: bool = True

    def params(self) -> dict[str, object]:
        return {"key_id": self.key_id, "any_key": self.any_worker}


ANY_CALLER = Caller()


@dataclass(frozen=True)
class LeaseConfig:
    lease_ttl_seconds: float = 30.0
    backoff_base_seconds: float = BACKOFF_BASE_SECONDS_DEFAULT
    backoff_cap_seconds: float = BACKOFF_CAP_SECONDS_DEFAULT
    max_result_bytes: int = PAYLOAD_LIMIT_BYTES_DEFAULT


@dataclass(frozen=True)
class Timing:
    """How long one task spent in a phase, for the duration and queue-wait histograms."""

    task_type: str
    seconds: float


@dataclass(frozen=True)
class Claimed:
    tasks: list[ClaimedTask]
    queue_waits: list[Timing]  # ready (run_at) to claimed
    task_types: frozenset[str] | None  # the worker's; None: it is not online (draining)


@dataclass(frozen=True)
class Completed:
    outcome: LeaseOutcome
    durations: list[Timing]  # claimed to completed


class WorkerStore:
    def __init__(self, connector: Connector, config: LeaseConfig, events: EventPublisher) -> None:
        self._db = connector
        self.config = config
        self._events = events

    async def worker_register(
        self, request: RegisterWorkerRequest, caller: Caller = ANY_CALLER
    ) -> None:
        prefetch = request.concurrency if request.prefetch is None else request.prefetch
        # Deduplicated: one defaults row per type (an upsert may not touch a row twice).
        task_types = list(dict.fromkeys(request.task_types))
        options = [request.task_options.get(t, NO_OPTIONS) for t in task_types]
        row = await self._db.fetch_one(
            "worker_register",
            {
                "worker_id": request.worker_id,
                "task_types": task_types,
                "concurrency": request.concurrency,
                "prefetch": prefetch,
                "default_max_retries": [o.max_retries for o in options],
                "default_timeouts": [o.timeout_seconds for o in options],
                **caller.params(),
            },
        )
        if row is None:
            raise Forbidden(_not_yours(request.worker_id))

    async def worker_check_owner(self, worker_id: str, caller: Caller) -> None:
        """403 unless the caller registered this worker (or may act as any); 404 unknown."""
        if not caller.any_worker:
            await self._registration(worker_id, caller)

    async def _registration(self, worker_id: str, caller: Caller) -> dict[str, Any]:
        """The worker's row, if the caller may act as it: 404 unknown, 403 another key's."""
        row = await self._db.fetch_one("worker_get", {"worker_id": worker_id})
        if row is None:
            raise NotFound(f"worker {worker_id} is not registered")
        if not caller.any_worker and row["key_id"] != caller.key_id:
            raise Forbidden(_not_yours(worker_id))
        return row

    async def worker_heartbeat(
        self, worker_id: str, beat: HeartbeatRequest, caller: Caller = ANY_CALLER
    ) -> HeartbeatResponse:
        async with self._db.transaction() as tx:
            alive = await tx.fetch_one(
                "worker_heartbeat",
                {
                    "worker_id": worker_id,
                    "cpu_usage_percent": float(beat.cpu_usage_percent),
                    "memory_usage_mb": float(beat.memory_usage_mb),
                    "current_tasks": beat.current_tasks,
                    **caller.params(),
                },
            )
            if alive is None:
                await self.worker_check_owner(worker_id, caller)
                raise NotFound(f"worker {worker_id} is not registered or was marked offline")
            if len(beat.leases) > alive["lease_max"]:  # raising rolls the heartbeat back
                raise InvalidRequest(
                    f"a heartbeat renews at most {alive['lease_max']} leases (the worker's "
                    f"concurrency + prefetch); this one has {len(beat.leases)}"
                )
            rows = await self._renew_leases(tx, worker_id, beat) if beat.leases else []
        await self._events.publish_rows(
            [row for row in rows if row["progressed"]], transitions=False
        )
        renewed = {row["task_id"] for row in rows}
        held = [lease.task_id for lease in beat.leases]
        return HeartbeatResponse(
            renewed=[t for t in held if t in renewed],
            abandon=[t for t in held if t not in renewed],
            abort=[row["task_id"] for row in rows if row["abort"]],
        )

    async def _renew_leases(
        self, tx: Session, worker_id: str, beat: HeartbeatRequest
    ) -> list[dict[str, Any]]:
        """Renew the beat's leases, storing the progress it carries for them (the last report
        of a task wins); each row says whether the task was asked to abort."""
        progress = {report.task_id: report for report in beat.progress}
        reports = [progress.get(lease.task_id) for lease in beat.leases]
        return await tx.fetch_all(
            "task_renew_leases",
            {
                "worker_id": worker_id,
                "lease_ttl_seconds": self.config.lease_ttl_seconds,
                "task_ids": [lease.task_id for lease in beat.leases],
                "lease_tokens": [lease.lease_token for lease in beat.leases],
                "fractions": [None if r is None else float(r.fraction) for r in reports],
                "messages": [
                    None if r is None or r.message is None else storable_text(r.message)
                    for r in reports
                ],
            },
        )

    async def worker_drain(self, worker_id: str, caller: Caller = ANY_CALLER) -> None:
        """The worker stops claiming; its waiting claim (on any replica) returns now."""
        await self.worker_check_owner(worker_id, caller)
        if await self._db.fetch_one("worker_drain", {"worker_id": worker_id}) is None:
            await self._raise_not_online(worker_id, caller)

    async def worker_deregister(self, worker_id: str, caller: Caller = ANY_CALLER) -> None:
        await self.worker_check_owner(worker_id, caller)
        async with self._db.transaction() as tx:
            if await tx.fetch_one("worker_set_offline", {"worker_id": worker_id}) is None:
                raise NotFound(f"worker {worker_id} is not registered")
            await tx.execute("worker_expire_leases", {"worker_id": worker_id})

    async def _raise_not_online(self, worker_id: str, caller: Caller) -> None:
        """Explain why a worker could not claim: 404 unknown, 403 another key's, 409 offline;
        draining is fine."""
        if (await self._registration(worker_id, caller))["status"] == "offline":
            raise Conflict(f"worker {worker_id} was marked offline; register again")

    async def task_claim(
        self, worker_id: str, max_tasks: int, caller: Caller = ANY_CALLER
    ) -> Claimed:
        """One claim statement; only for a worker that is online while it runs (and only by
        the key that registered it)."""
        rows = await self._db.fetch_all(
            "task_claim",
            {
                "worker_id": worker_id,
                "max_tasks": max_tasks,
                "lease_ttl_seconds": self.config.lease_ttl_seconds,
                "attempts_kept": ATTEMPTS_KEPT,
                **caller.params(),
            },
        )
        types = rows[0]["worker_task_types"] if rows else None
        if types is None:
            await self._raise_not_online(worker_id, caller)
            return Claimed([], [], None)
        rows = [r for r in rows if r["task_id"] is not None]
        await self._events.publish_rows(rows)
        rows.sort(key=lambda r: (-r["priority"], r["run_at"]))
        waits = [
            Timing(r["task_type"], max(0.0, (r["claimed_at"] - r["run_at"]).total_seconds()))
            for r in rows
        ]
        fields = ClaimedTask.model_fields
        tasks = [
            ClaimedTask.model_validate(
                {k: v for k, v in r.items() if k in fields} | {"payload": bytes(r["payload"])}
            )
            for r in rows
        ]
        return Claimed(tasks, waits, frozenset(types))

    async def task_claim_waiting(
        self,
        worker_id: str,
        max_tasks: int,
        wait_seconds: float,
        notifier: TaskReadyNotifier,
        gone: asyncio.Event | None = None,
        caller: Caller = ANY_CALLER,
    ) -> Claimed:
        """Claim now, or wait up to wait_seconds for tasks of the worker's types. Ends at once
        when the worker drains or deregisters, a newer claim of it arrives, the broker stops,
        or `gone` is set (the client disconnected)."""
        deadline = time.monotonic() + wait_seconds
        with notifier.waiting(worker_id) as waiter:
            while True:
                waiter.woken.clear()  # before the statement: a wake during it is kept
                claimed = await self.task_claim(worker_id, max_tasks, caller)
                remaining = deadline - time.monotonic()
                if claimed.tasks or claimed.task_types is None or remaining <= 0:
                    return claimed
                waiter.task_types = claimed.task_types
                if waiter.ended or (gone is not None and gone.is_set()):
                    return claimed
                if gone is None:
                    await waiter.wait(remaining)
                else:
                    await _first(waiter.wait(remaining), gone.wait())

    async def task_complete_many(self, tasks: list[CompletedTask]) -> Completed:
        for task in tasks:
            if len(task.result) > self.config.max_result_bytes:
                raise PayloadTooLarge(
                    f"result of task {task.task_id} is {len(task.result)} bytes; "
                    f"the limit is {self.config.max_result_bytes}"
                )
        rows = await self._db.fetch_all(
            "task_complete_many",
            {
                "task_ids": [t.task_id for t in tasks],
                "lease_tokens": [t.lease_token for t in tasks],
                "results": [t.result for t in tasks],
            },
        )
        await self._events.publish_rows(rows)
        durations = [
            Timing(r["task_type"], (r["finished_at"] - r["claimed_at"]).total_seconds())
            for r in rows
            if r["status"] == "completed"  # not an aborted task (cancelled)
        ]
        return Completed(
            _outcome([t.task_id for t in tasks], {r["task_id"] for r in rows}), durations
        )

    async def task_fail_many(self, tasks: list[FailedTask]) -> LeaseOutcome:
        rows = await self._db.fetch_all(
            "task_fail_many",
            {
                "task_ids": [t.task_id for t in tasks],
                "lease_tokens": [t.lease_token for t in tasks],
                "errors": [storable_text(t.error) for t in tasks],
                "retryable": [t.retryable for t in tasks],
                "retry_delays": [
                    None if t.retry_delay_seconds is None else float(t.retry_delay_seconds)
                    for t in tasks
                ],
                "backoff_base_seconds": self.config.backoff_base_seconds,
                "backoff_cap_seconds": self.config.backoff_cap_seconds,
            },
        )
        await self._events.publish_rows(rows)
        return _outcome([t.task_id for t in tasks], {r["task_id"] for r in rows})

    async def task_release_many(self, leases: list[Lease]) -> LeaseOutcome:
        rows = await self._db.fetch_all(
            "task_release_many",
            {
                "task_ids": [lease.task_id for lease in leases],
                "lease_tokens": [lease.lease_token for lease in leases],
            },
        )
        await self._events.publish_rows(rows)
        return _outcome([lease.task_id for lease in leases], {r["task_id"] for r in rows})

    async def worker_list(self) -> list[WorkerInfo]:
        """Workers that have not been marked offline."""
        rows = await self._db.fetch_all("worker_list")
        return [WorkerInfo.model_validate(row) for row in rows]


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until the first of these finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _not_yours(worker_id: str) -> str:
    return f"worker {worker_id} was registered with another API key"


def storable_text(text: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates (both are valid in JSON)."""
    return text.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")


def _outcome(requested: list[UUID], accepted: set[UUID]) -> LeaseOutcome:
    outcome = LeaseOutcome(
        accepted=[t for t in requested if t in accepted],
        rejected=[t for t in requested if t not in accepted],
    )
    if not outcome.accepted:
        raise Conflict("every task in the batch has a stale lease; nothing changed")
    return outcome
