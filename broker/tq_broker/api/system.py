"""Routes for the queue as a whole: stats, workers, health."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from tq_broker.api.deps import ElectorDep, SettingsDep, StoreDep
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.security import requires
from tq_broker.errors import StoreUnavailable
from tq_broker.keys import Permission
from tq_client.models import Health, Stats, WorkerInfo

router = APIRouter(tags=["system"])
_worker_list_json = TypeAdapter(list[WorkerInfo])
JSON = "application/json"


@router.get(
    "/api/v1/stats",
    response_model=Stats,
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
)
async def stats(store: StoreDep) -> Response:
    return Response((await store.stats()).model_dump_json(), media_type=JSON)


@router.get(
    "/api/v1/workers",
    response_model=list[WorkerInfo],
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
)
async def workers(store: StoreDep) -> Response:
    return Response(_worker_list_json.dump_json(await store.worker_list()), media_type=JSON)


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "Degraded: PostgreSQL unreachable"}},
)
async def health(store: StoreDep, elector: ElectorDep, settings: SettingsDep) -> Response:
    try:
        counts = await asyncio.wait_for(store.health_counts(), settings.health_timeout_seconds)
    except (StoreUnavailable, TimeoutError):
        body = Health(
            status="degraded",
            is_leader=elector.is_leader,
            connected_workers=None,
            pending_tasks=None,
        )
        return Response(body.model_dump_json(), status_code=503, media_type=JSON)
    body = Health(
        status="healthy",
        is_leader=elector.is_leader,
        connected_workers=counts.connected_workers,
        pending_tasks=counts.pending_tasks,
    )
    return Response(body.model_dump_json(), media_type=JSON)
