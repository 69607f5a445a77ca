"""Routes of /api/v1/tasks: submit (single and batch), get, list, cancel, abort, requeue."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from pydantic import TypeAdapter

from tq_broker.api.deps import StoreDep, TaskWaitsDep, broker_of
from tq_broker.api.disconnect import disconnect_event
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.parsing import OffLoopJsonRoute
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.auth import Principal, actor_of, submitter_of
from tq_broker.errors import InvalidRequest
from tq_broker.keys import Permission
from tq_client.models import (
    TASK_TYPE_PATTERN,
    WAIT_SECONDS_MAX,
    AbortTaskResponse,
    RequeueManyRequest,
    RequeueManyResponse,
    SubmitBatchRequest,
    SubmitBatchResponse,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskAttempt,
    TaskDetail,
    TaskPayload,
    TaskStatus,
    TaskSummary,
)

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], route_class=OffLoopJsonRoute)

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
_task_list_json = TypeAdapter(list[TaskSummary])
_attempt_list_json = TypeAdapter(list[TaskAttempt])


@router.post(
    "",
    dependencies=[requires(Permission.SUBMIT_TASKS)],
    status_code=201,
    response_model=SubmitTaskResponse,
    responses={
        200: {"model": SubmitTaskResponse, "description": "Idempotent repeat"},
        **ERROR_RESPONSES,
    },
    summary="Submit a task",
)
async def submit_task(
    body: SubmitTaskRequest,
    store: StoreDep,
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    if idempotency_key is not None and not IDEMPOTENCY_KEY_PATTERN.match(idempotency_key):
        raise InvalidRequest("Idempotency-Key: 1-255 printable ASCII characters without spaces")
    principal: Principal | None = getattr(request.state, "principal", None)
    submitted = await store.task_insert(body, idempotency_key, submitter_of(principal))
    return json_response(submitted.task, 201 if submitted.created else 200)


@router.post(
    "/batch",
    # Rate-limited below, once the number of tasks is known: one token per task.
    dependencies=[requires(Permission.SUBMIT_TASKS, rate_limited=False)],
    status_code=201,
    response_model=SubmitBatchResponse,
    responses=ERROR_RESPONSES,
    summary="Submit up to 1000 tasks, all or none (each costs one rate-limit token)",
)
async def submit_batch(body: SubmitBatchRequest, store: StoreDep, request: Request) -> Response:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is not None:
        auth = broker_of(request.app).authenticator
        request.state.rate_limit = await auth.admit(principal, cost=len(body.tasks))
    tasks = await store.task_insert_many(list(body.tasks), submitter_of(principal))
    return json_response(SubmitBatchResponse(tasks=tasks), 201)


@router.post(
    "/requeue",
    dependencies=[requires(Permission.ADMIN)],
    response_model=RequeueManyResponse,
    responses=ERROR_RESPONSES,
    summary="Admin: requeue the dead letters that match a filter (at most `limit`)",
)
async def requeue_many(body: RequeueManyRequest, store: StoreDep) -> Response:
    task_ids = list(dict.fromkeys(body.task_ids)) if body.task_ids is not None else None
    requeued, remaining = await store.task_requeue_many(body.task_type, task_ids, body.limit)
    return json_response(RequeueManyResponse(requeued=requeued, remaining=remaining))


async def _method_not_allowed() -> Response:
    raise HTTPException(405, "Method Not Allowed")


# POST-only actions under /tasks/: without these, GET /tasks/claim would match
# /tasks/{task_id} and answer "invalid UUID" instead of 405.
for _action in ("batch", "claim", "complete", "fail", "release", "requeue"):
    router.add_api_route(
        f"/{_action}",
        _method_not_allowed,
        methods=["GET", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )


@router.get(
    "/{task_id}",
    dependencies=[requires(Permission.READ_TASKS)],
    response_model=TaskDetail,
    responses=ERROR_RESPONSES,
    summary="Get a task",
)
async def get_task(
    task_id: UUID,
    request: Request,
    waits: TaskWaitsDep,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=WAIT_SECONDS_MAX,
            description="Long-poll: answer once the task is completed, dead_letter or "
            f"cancelled, or after this many seconds (0-{WAIT_SECONDS_MAX}), whichever is first.",
        ),
    ] = None,
) -> Response:
    if not wait:
        return json_response(await waits.task_get_when_finished(task_id, 0))
    wait = min(wait, broker_of(request.app).settings.task_wait_max_seconds)
    async with disconnect_event(request) as gone:
        return json_response(await waits.task_get_when_finished(task_id, wait, gone))


@router.get(
    "/{task_id}/attempts",
    dependencies=[requires(Permission.READ_TASKS)],
    response_model=list[TaskAttempt],
    responses=ERROR_RESPONSES,
    summary="A task's attempts, oldest first (the last 50)",
)
async def task_attempts(task_id: UUID, store: StoreDep) -> Response:
    return json_response(_attempt_list_json.dump_json(await store.task_attempts(task_id)))


@router.get(
    "/{task_id}/payload",
    dependencies=[requires(Permission.READ_TASKS)],
    response_model=TaskPayload,
    responses=ERROR_RESPONSES,
    summary="Get a task's payload (base64)",
)
async def get_task_payload(task_id: UUID, store: StoreDep) -> Response:
    return json_response(TaskPayload(task_id=task_id, payload=await store.task_payload(task_id)))


@router.get(
    "",
    dependencies=[requires(Permission.READ_TASKS)],
    response_model=list[TaskSummary],
    responses=ERROR_RESPONSES,
    summary="List tasks",
)
async def list_tasks(
    store: StoreDep,
    status: TaskStatus | None = None,
    task_type: Annotated[str | None, Query(pattern=TASK_TYPE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Response:
    tasks = await store.task_list(status, task_type, limit, offset)
    return json_response(_task_list_json.dump_json(tasks))


@router.delete(
    "/{task_id}",
    dependencies=[requires(Permission.CANCEL_TASKS)],
    status_code=204,
    responses=ERROR_RESPONSES,
    summary="Cancel a pending task",
)
async def cancel_task(task_id: UUID, store: StoreDep) -> Response:
    await store.task_cancel(task_id)
    return Response(status_code=204)


@router.post(
    "/{task_id}/abort",
    dependencies=[requires(Permission.CANCEL_TASKS)],
    response_model=AbortTaskResponse,
    responses={
        202: {"model": AbortTaskResponse, "description": "Running: its worker will stop it"},
        **ERROR_RESPONSES,
    },
    summary="Abort a task: cancel it if waiting (200), stop it if running (202); 409 if finished",
)
async def abort_task(task_id: UUID, store: StoreDep, request: Request) -> Response:
    principal: Principal | None = getattr(request.state, "principal", None)
    aborted = await store.task_abort(task_id, actor_of(principal))
    return json_response(aborted, 200 if aborted.status is TaskStatus.CANCELLED else 202)


@router.post(
    "/{task_id}/requeue",
    dependencies=[requires(Permission.ADMIN)],
    response_model=SubmitTaskResponse,
    responses=ERROR_RESPONSES,
    summary="Admin: requeue a dead-lettered task",
)
async def requeue(task_id: UUID, store: StoreDep) -> Response:
    status = await store.task_requeue(task_id)
    return json_response(SubmitTaskResponse(task_id=task_id, status=TaskStatus(status)))
