"""The numbers of the dashboard's overview, computed from the queue's tables and shared by every
viewer of one replica (the route is tq_broker.ui.overview).

The one thing not to break: the cost does not grow with the number of people looking, nor the
answer with the number of tasks. A replica computes it at most once per
`OVERVIEW_CACHE_SECONDS` whatever the number of open dashboards, and the answer carries at
most `TASK_TYPES_SHOWN` task types (the busiest; `task_types_more` says others exist).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tq_broker.connector import Connector

OVERVIEW_CACHE_SECONDS = 5.0  # as often as the page refreshes and the leader snapshots metrics
TASK_TYPES_SHOWN = 50


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
