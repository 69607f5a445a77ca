"""Routes for the queue as a whole: stats, workers, health."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter

from tq_broker.api.deps import ElectorDep, MetricsDep, SettingsDep, StoreDep, WorkerStoreDep
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.errors import InvalidRequest, NotFound, StoreUnavailable
from tq_broker.keys import Permission
from tq_client.models import TASK_TYPE_PATTERN, Health, QueueDepth, Stats, WorkerInfo

router = APIRouter(tags=["system"])
_worker_list_json = TypeAdapter(list[WorkerInfo])


@router.get(
    "/api/v1/stats",
    response_model=Stats,
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
)
async def stats(store: StoreDep) -> Response:
    return json_response(await store.stats())


@router.get(
    "/api/v1/workers",
    response_model=list[WorkerInfo],
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
)
async def workers(store: WorkerStoreDep) -> Response:
    return json_response(_worker_list_json.dump_json(await store.worker_list()))


@router.get(
    "/api/v1/queue-depth",
    response_model=QueueDepth,
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
    summary="Ready, scheduled and running tasks of some task types (for autoscalers)",
)
async def queue_depth(
    store: StoreDep,
    task_type: Annotated[list[str], Query(min_length=1, max_length=100)],
) -> Response:
    for name in task_type:
        if not re.fullmatch(TASK_TYPE_PATTERN, name):
            raise InvalidRequest(f"task_type: {name!r} is not a valid task type")
    depth = await store.queue_depth(list(dict.fromkeys(task_type)))
    return json_response(depth)


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
        return json_response(body, 503)
    body = Health(
        status="healthy",
        is_leader=elector.is_leader,
        connected_workers=counts.connected_workers,
        pending_tasks=counts.pending_tasks,
    )
    return json_response(body)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (queue-state gauges come from the leader only)",
)
async def prometheus_metrics(metrics: MetricsDep, settings: SettingsDep) -> Response:
    if not settings.metrics_on_api_port:
        raise NotFound("metrics are served on the metrics port only (TQ_METRICS_ON_API_PORT)")
    return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)
