"""What operators see of scheduled work and unserved task types, on real PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi.testclient import TestClient

FUTURE = "2099-01-01T00:00:00Z"


def submit(api: TestClient, task_type: str, **fields: Any) -> str:
    response = api.post("/api/v1/tasks", json={"task_type": task_type, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


def register(api: TestClient, worker_id: str, task_types: list[str]) -> None:
    body = {"worker_id": worker_id, "task_types": task_types, "concurrency": 3}
    assert api.post("/api/v1/workers", json=body).status_code == 201


def test_stats_count_scheduled_work_apart_from_queue_depth(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    submit(api, "resize", priority=250)
    submit(api, "resize", priority=250, schedule_at=FUTURE)
    retrying = submit(api, "resize", priority=10)
    db.execute(  # a failed attempt waiting out its backoff
        "UPDATE tq_tasks SET status = 'failed', retry_count = 1, "
        "run_at = now() + interval '1 hour' WHERE task_id = %s",
        (retrying,),
    )
    stats = api.get("/api/v1/stats").json()
    assert stats["pending_count"] == 2  # every pending task, the far-future one included
    assert stats["scheduled_count"] == 2  # not yet due: the scheduled one and the retry
    assert stats["queue_depth_by_priority"] == {"high": 1, "normal": 0, "low": 0}  # due now


def test_queue_depth_names_types_with_ready_tasks_and_no_online_worker(
    api: TestClient,
) -> None:
    for task_type in ("orphan", "served", "drained"):
        submit(api, task_type)
    submit(api, "later", schedule_at=FUTURE)  # nothing ready: not unserved
    register(api, "worker-a-1-aaaaaa", ["served", "other"])
    register(api, "worker-b-1-bbbbbb", ["drained"])
    assert api.post("/api/v1/workers/worker-b-1-bbbbbb/drain").status_code == 204
    depth = api.get(
        "/api/v1/queue-depth",
        params=[("task_type", t) for t in ("served", "orphan", "drained", "later", "none")],
    ).json()
    assert (depth["ready"], depth["scheduled"], depth["in_progress"]) == (3, 1, 0)
    assert depth["unserved_task_types"] == ["drained", "orphan"]
    empty = api.get("/api/v1/queue-depth", params={"task_type": "none"}).json()
    assert empty == {
        "task_types": ["none"],
        "ready": 0,
        "scheduled": 0,
        "in_progress": 0,
        "unserved_task_types": [],
    }


def test_workers_show_their_types_concurrency_and_status(api: TestClient) -> None:
    register(api, "worker-a-1-aaaaaa", ["resize", "email", "resize"])
    register(api, "worker-b-1-bbbbbb", ["email"])
    assert api.post("/api/v1/workers/worker-b-1-bbbbbb/drain").status_code == 204
    register(api, "worker-c-1-cccccc", ["email"])
    assert api.delete("/api/v1/workers/worker-c-1-cccccc").status_code == 204
    workers = {w["worker_id"]: w for w in api.get("/api/v1/workers").json()}
    assert set(workers) == {"worker-a-1-aaaaaa", "worker-b-1-bbbbbb"}  # offline: not listed
    a, b = workers["worker-a-1-aaaaaa"], workers["worker-b-1-bbbbbb"]
    assert (a["task_types"], a["concurrency"], a["status"]) == (["resize", "email"], 3, "online")
    assert (b["task_types"], b["status"]) == (["email"], "draining")
