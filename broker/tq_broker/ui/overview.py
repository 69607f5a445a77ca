"""What the dashboard's overview page shows, in one answer: `GET /api/v1/overview` (computed and
cached by tq_broker.overview, shared by every viewer); and who the caller is, `GET /api/v1/me`,
so the pages can hide the actions a key may not take.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from tq_broker.api.deps import ElectorDep, broker_of
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.auth import Principal
from tq_broker.keys import Permission
from tq_client.models import PERMISSIONS

router = APIRouter(tags=["dashboard"])


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaskTypeLoad(Frozen):
    task_type: str
    ready: int  # claimable now
    scheduled: int  # waiting for schedule_at or a retry's backoff
    in_progress: int
    dead_letter: int
    oldest_ready_seconds: float  # how long the oldest ready task has waited; 0 if none
    served: bool  # some online worker runs this type


class Minute(Frozen):
    minute: datetime
    completed: int
    failed: int  # failed attempts: retried or dead-lettered


class Overview(Frozen):
    as_of: datetime
    pending: int  # status pending, the contract's pending_count
    ready: int
    scheduled: int
    in_progress: int
    dead_letter: int
    by_priority: dict[str, int]  # pending by bucket: high >= 200, normal 100-199, low <= 99
    task_types: list[TaskTypeLoad]  # the busiest TASK_TYPES_SHOWN
    task_types_more: bool
    unserved_task_types: list[str]  # ready tasks and no online worker for them (shown ones)
    throughput: list[Minute]  # the last hour, minutes without any left out
    workers_online: int
    workers_draining: int
    is_leader: bool  # of the replica that answered
    replica_status: str


class Me(Frozen):
    auth: bool  # False: the broker runs with authentication off, everything is allowed
    name: str | None
    permissions: list[str]


@router.get(
    "/api/v1/overview",
    response_model=Overview,
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
    summary="The dashboard's overview: counts, load by task type, the last hour (cached 5 s)",
)
async def overview(request: Request, elector: ElectorDep) -> Response:
    answer = await broker_of(request.app).overview.load()
    body = Overview.model_validate(
        {**answer, "is_leader": elector.is_leader, "replica_status": "healthy"}
    )
    return json_response(body)


@router.get(
    "/api/v1/me",
    response_model=Me,
    responses=ERROR_RESPONSES,
    summary="The calling key's name and permissions (any valid key)",
)
async def me(request: Request) -> Response:
    auth = broker_of(request.app).authenticator
    if not auth.config.enabled:
        return json_response(Me(auth=False, name=None, permissions=list(PERMISSIONS)))
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # the guard let it through with the database away: try once more
        principal = await auth.authenticate(request.headers.get("authorization"))
    request.state.rate_limit = await auth.admit(principal)
    granted = (
        PERMISSIONS
        if Permission.ADMIN in principal.permissions
        else sorted(p.value for p in principal.permissions)
    )
    return json_response(Me(auth=True, name=principal.name, permissions=list(granted)))
