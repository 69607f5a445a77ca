"""Routes of the worker protocol: register, heartbeat, drain, deregister, claim, complete, fail,
release."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from tq_broker.api.deps import BudgetDep, MetricsDep, NotifierDep, SettingsDep, WorkerStoreDep
from tq_broker.api.disconnect import disconnect_event
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.parsing import OffLoopJsonRoute
from tq_broker.api.responses import json_response
from tq_broker.api.security import CallerDep, requires
from tq_broker.auth import RateLimited
from tq_broker.keys import Permission
from tq_client.protocol import (
    WORKER_ID_PATTERN,
    ClaimRequest,
    ClaimResponse,
    CompleteRequest,
    FailRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    Lease,
    LeaseOutcome,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    ReleaseRequest,
)

router = APIRouter(tags=["workers"], route_class=OffLoopJsonRoute)
WorkerIdPath = Annotated[str, Path(pattern=WORKER_ID_PATTERN)]


@router.post(
    "/api/v1/workers",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    status_code=201,
    response_model=RegisterWorkerResponse,
    responses=ERROR_RESPONSES,
    summary="Register a worker (or bring it back online)",
)
async def register_worker(
    body: RegisterWorkerRequest, store: WorkerStoreDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    await store.worker_register(body, caller)
    return json_response(
        RegisterWorkerResponse(
            worker_id=body.worker_id,
            heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
            lease_ttl_seconds=settings.lease_ttl_seconds,
            claim_wait_max_seconds=settings.claim_wait_max_seconds,
            abort_grace_seconds=settings.abort_grace_seconds,
        ),
        201,
    )


@router.post(
    "/api/v1/workers/{worker_id}/heartbeat",
    # Heartbeats never queue behind the rate limit: a busy worker must not lose its leases.
    dependencies=[requires(Permission.PROCESS_TASKS, rate_limited=False)],
    response_model=HeartbeatResponse,
    responses=ERROR_RESPONSES,
    summary="Heartbeat: liveness, load, lease renewal",
)
async def heartbeat(
    worker_id: WorkerIdPath,
    body: HeartbeatRequest,
    store: WorkerStoreDep,
    budget: BudgetDep,
    caller: CallerDep,
) -> Response:
    decision = budget.admit(worker_id)
    if not decision.admitted:
        raise RateLimited(decision, "heartbeats of this worker are over their budget")
    return json_response(await store.worker_heartbeat(worker_id, body, caller))


@router.post(
    "/api/v1/workers/{worker_id}/drain",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    status_code=204,
    responses=ERROR_RESPONSES,
    summary="Stop claiming: the worker's waiting claim returns now; it keeps its leases",
)
async def drain_worker(
    worker_id: WorkerIdPath, store: WorkerStoreDep, caller: CallerDep
) -> Response:
    await store.worker_drain(worker_id, caller)
    return Response(status_code=204)


@router.delete(
    "/api/v1/workers/{worker_id}",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    status_code=204,
    responses=ERROR_RESPONSES,
    summary="Deregister a worker; tasks it still holds are rescued at once",
)
async def deregister_worker(
    worker_id: WorkerIdPath, store: WorkerStoreDep, caller: CallerDep
) -> Response:
    await store.worker_deregister(worker_id, caller)
    return Response(status_code=204)


@router.post(
    "/api/v1/tasks/claim",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    response_model=ClaimResponse,
    responses=ERROR_RESPONSES,
    summary="Claim ready tasks (long-poll up to wait_seconds)",
)
async def claim(
    request: Request,
    body: ClaimRequest,
    store: WorkerStoreDep,
    notifier: NotifierDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    caller: CallerDep,
) -> Response:
    wait = min(float(body.wait_seconds), settings.claim_wait_max_seconds)
    async with disconnect_event(request) as gone:
        claimed = await store.task_claim_waiting(
            body.worker_id, body.max_tasks, wait, notifier, gone, caller
        )
    if gone.is_set() and claimed.tasks:
        # Nobody will read the answer: hand the tasks back at once, no attempt counted.
        leases = [Lease(task_id=t.task_id, lease_token=t.lease_token) for t in claimed.tasks]
        await store.task_release_many(leases)
        return json_response(ClaimResponse(tasks=[]))
    metrics.observe_durations(metrics.queue_wait, claimed.queue_waits)
    return json_response(ClaimResponse(tasks=claimed.tasks))


@router.post(
    "/api/v1/tasks/complete",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    response_model=LeaseOutcome,
    responses=ERROR_RESPONSES,
    summary="Report results; stale leases are rejected",
)
async def complete(
    body: CompleteRequest, store: WorkerStoreDep, metrics: MetricsDep, caller: CallerDep
) -> Response:
    await store.worker_check_owner(body.worker_id, caller)
    completed = await store.task_complete_many(list(body.tasks))
    metrics.observe_durations(metrics.task_duration, completed.durations)
    return json_response(completed.outcome)


@router.post(
    "/api/v1/tasks/fail",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    response_model=LeaseOutcome,
    responses=ERROR_RESPONSES,
    summary="Report failed attempts; stale leases are rejected",
)
async def fail(body: FailRequest, store: WorkerStoreDep, caller: CallerDep) -> Response:
    await store.worker_check_owner(body.worker_id, caller)
    return json_response(await store.task_fail_many(list(body.tasks)))


@router.post(
    "/api/v1/tasks/release",
    dependencies=[requires(Permission.PROCESS_TASKS)],
    response_model=LeaseOutcome,
    responses=ERROR_RESPONSES,
    summary="Hand back claimed tasks that never started (no attempt counted)",
)
async def release(body: ReleaseRequest, store: WorkerStoreDep, caller: CallerDep) -> Response:
    await store.worker_check_owner(body.worker_id, caller)
    return json_response(await store.task_release_many(list(body.tasks)))
