"""What the dashboard's overview page shows, in one answer: `GET /api/v1/overview`; and who the
caller is, `GET /api/v1/me`, so the pages can hide the actions a key may not take.

The one thing not to break: the cost of the overview does not grow with the number of people
looking at it, nor its answer with the number of tasks. Each replica computes it at most once
per `OVERVIEW_CACHE_SECONDS` whatever the number of open dashboards, and the answer carries at
most `TASK_TYPES_SHOWN` task types (the busiest; `task_types_more` says others exist). At a
million pending tasks the counts are aggregates over the ready index (as the leader's metrics
snapshot already does), never a list.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from tq_broker.api.deps import ElectorDep
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.auth import Authenticator, Principal
from tq_broker.connector import Connector
from tq_broker.keys import Permission
from tq_client.models import PERMISSIONS

OVERVIEW_CACHE_SECONDS = 5.0  # as often as the page refreshes and the leader snapshots metrics
TASK_TYPES_SHOWN = 50

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


class OverviewQueries:
    """The overview's statements, cached for OVERVIEW_CACHE_SECONDS (one computation at a
    time: concurrent readers wait for the same answer)."""

    def __init__(self, connector: Connector) -> None:
        self._db = connector
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> dict[str, Any]:
        async with self._lock:
            if self._cached is not None and time.monotonic() < self._cached[0]:
                return self._cached[1]
            answer = await self._compute()
            self._cached = (time.monotonic() + OVERVIEW_CACHE_SECONDS, answer)
            return answer

    async def _compute(self) -> dict[str, Any]:
        waiting = await self._db.fetch_all("metrics_waiting")
        running = await self._db.fetch_all("overview_in_progress")
        dead = await self._db.fetch_all("metrics_dead_letter")
        throughput = await self._db.fetch_all("overview_throughput")
        workers = await self._db.fetch_one("overview_workers")
        assert workers is not None  # an aggregate always returns one row
        return summarize(waiting, running, dead, throughput, workers)


def summarize(
    waiting: list[dict[str, Any]],
    running: list[dict[str, Any]],
    dead: list[dict[str, Any]],
    throughput: list[dict[str, Any]],
    workers: dict[str, Any],
) -> dict[str, Any]:
    """The overview (without the replica's own health) from the rows of its statements."""
    served = set(workers["served_types"] or [])
    by_priority = {"high": 0, "normal": 0, "low": 0}
    types: dict[str, dict[str, Any]] = {}

    def load_of(task_type: str) -> dict[str, Any]:
        return types.setdefault(
            task_type,
            {
                "task_type": task_type,
                "ready": 0,
                "scheduled": 0,
                "in_progress": 0,
                "dead_letter": 0,
                "oldest_ready_seconds": 0.0,
                "served": task_type in served,
            },
        )

    pending = 0
    for row in waiting:
        load = load_of(row["task_type"])
        load["ready"] += int(row["ready"])
        load["scheduled"] += int(row["scheduled"])
        age = float(row["oldest_ready_seconds"])
        load["oldest_ready_seconds"] = max(load["oldest_ready_seconds"], age)
        by_priority[row["priority"]] += int(row["pending"])
        pending += int(row["pending"])
    for row in running:
        load_of(row["task_type"])["in_progress"] += int(row["in_progress"])
    for row in dead:
        load_of(row["task_type"])["dead_letter"] += int(row["dead_letter"])
    busiest = sorted(
        types.values(),
        key=lambda t: (-(t["ready"] + t["in_progress"] + t["dead_letter"]), t["task_type"]),
    )
    shown = busiest[:TASK_TYPES_SHOWN]
    return {
        "as_of": workers["as_of"],
        "pending": pending,
        "ready": sum(t["ready"] for t in types.values()),
        "scheduled": sum(t["scheduled"] for t in types.values()),
        "in_progress": sum(t["in_progress"] for t in types.values()),
        "dead_letter": sum(t["dead_letter"] for t in types.values()),
        "by_priority": by_priority,
        "task_types": shown,
        "task_types_more": len(busiest) > len(shown),
        "unserved_task_types": [t["task_type"] for t in shown if t["ready"] and not t["served"]],
        "throughput": [
            {"minute": r["minute"], "completed": r["completed"], "failed": r["failed"]}
            for r in throughput
        ],
        "workers_online": int(workers["online"]),
        "workers_draining": int(workers["draining"]),
    }


@router.get(
    "/api/v1/overview",
    response_model=Overview,
    responses=ERROR_RESPONSES,
    dependencies=[requires(Permission.READ_TASKS)],
    summary="The dashboard's overview: counts, load by task type, the last hour (cached 5 s)",
)
async def overview(request: Request, elector: ElectorDep) -> Response:
    queries: OverviewQueries = request.app.state.overview
    answer = await queries.load()
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
    auth: Authenticator = request.app.state.authenticator
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
