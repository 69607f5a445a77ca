"""Periodic schedules with real broker processes: the leader is killed with SIGKILL while a
schedule fires every second, another replica takes over, and every fire time still made
exactly one task (the real clock here; tests/integration/test_scheduler.py moves an injected
one through the same cases, deterministically)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from .cluster import Cluster

SCHEDULER_ENV = {"TQ_SCHEDULE_CHECK_INTERVAL_SECONDS": "0.2"}


def fires(conninfo: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT f.fire_at, f.task_id, t.task_type, t.created_at"
            " FROM tq_schedule_fires f LEFT JOIN tq_tasks t USING (task_id) ORDER BY f.fire_at"
        ).fetchall()


def tick_tasks(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM tq_tasks WHERE task_type = 'tick'").fetchone()
        assert row is not None
        return int(row[0])


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_every_fire_time_makes_one_task_across_a_leader_killed_with_sigkill(
    cluster: Cluster,
) -> None:
    first = cluster.start_broker(SCHEDULER_ENV)
    wait_for(lambda: cluster.leader() is first, 15, "the first broker to lead")
    second = cluster.start_broker(SCHEDULER_ENV)
    created = httpx.post(
        f"{second.url}/api/v1/schedules",
        json={"name": "tick", "interval_seconds": 1, "task_type": "tick"},
    )
    assert created.status_code == 201, created.text
    anchor = datetime.fromisoformat(created.json()["next_fire_times"][0]) - timedelta(seconds=1)
    wait_for(lambda: len(fires(cluster.conninfo)) >= 3, 30, "three fires by the first leader")
    first.kill()
    killed_at = len(fires(cluster.conninfo))
    wait_for(lambda: cluster.leader() is second, 15, "the second broker to lead")
    wait_for(
        lambda: len(fires(cluster.conninfo)) >= killed_at + 3, 30, "three fires by the new leader"
    )
    second.stop()

    fired = fires(cluster.conninfo)
    assert all(f["task_type"] == "tick" for f in fired), "a fire without its task"
    assert tick_tasks(cluster.conninfo) == len(fired), "a task without its fire"
    times = [f["fire_at"] for f in fired]
    assert times == sorted(set(times))
    # on the schedule's grid: whole seconds from its anchor
    assert all((t - anchor).total_seconds() == int((t - anchor).total_seconds()) for t in times)
