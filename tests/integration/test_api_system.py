"""Stats, workers and health against real PostgreSQL, including a database that goes away."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tq_broker.embedded import EmbeddedPostgres


def add_task(
    db: psycopg.Connection[dict[str, Any]],
    status: str,
    priority: int = 100,
    finished_ago: str | None = None,
    processing_ms: int = 0,
) -> None:
    db.execute(
        """INSERT INTO tq_tasks (task_id, task_type, payload, priority, status, timeout_seconds,
                                 max_retries, claimed_at, finished_at, updated_at)
           VALUES (gen_random_uuid(), 'noop', '', %(priority)s, %(status)s, 300, 3,
                   now() - %(ago)s::interval - %(ms)s * interval '1 millisecond',
                   now() - %(ago)s::interval, now() - %(ago)s::interval)""",
        {"priority": priority, "status": status, "ago": finished_ago or "0 s", "ms": processing_ms},
    )


def test_stats_counts_every_field_of_the_contract(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    for priority in (255, 200, 199, 100, 100, 99, 0):
        add_task(db, "pending", priority)
    add_task(db, "in_progress")
    add_task(db, "completed", processing_ms=100)
    add_task(db, "completed", processing_ms=300)
    add_task(db, "completed", finished_ago="2 hours", processing_ms=5000)
    add_task(db, "failed")
    add_task(db, "dead_letter")
    add_task(db, "dead_letter", finished_ago="3 hours")
    db.execute(
        "INSERT INTO tq_workers (worker_id, task_types, concurrency) VALUES "
        "('w1', '{noop}', 4), ('w2', '{noop}', 4)"
    )
    db.execute(
        "INSERT INTO tq_workers (worker_id, task_types, concurrency, status) VALUES "
        "('gone', '{noop}', 4, 'offline')"
    )

    stats = api.get("/api/v1/stats").json()
    assert stats == {
        "pending_count": 7,
        "in_progress_count": 1,
        "completed_last_hour": 2,
        "failed_last_hour": 2,
        "worker_count": 2,
        "avg_processing_time_ms": stats["avg_processing_time_ms"],
        "queue_depth_by_priority": {"high": 2, "normal": 3, "low": 2},
        "scheduled_count": 0,
    }
    assert abs(stats["avg_processing_time_ms"] - 200.0) < 1.0


def test_stats_of_an_empty_queue_are_zero(api: TestClient) -> None:
    stats = api.get("/api/v1/stats").json()
    assert stats["pending_count"] == 0
    assert stats["avg_processing_time_ms"] == 0.0
    assert stats["queue_depth_by_priority"] == {"high": 0, "normal": 0, "low": 0}


def test_workers_lists_connected_workers_with_contract_fields(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    db.execute(
        "INSERT INTO tq_workers (worker_id, task_types, concurrency, current_tasks, "
        "cpu_usage_percent, memory_usage_mb) VALUES "
        "('worker-host-12345-abc123', '{send_email}', 4, 3, 45.2, 256)"
    )
    db.execute(
        "INSERT INTO tq_workers (worker_id, task_types, concurrency, status) "
        "VALUES ('worker-gone', '{x}', 1, 'offline')"
    )
    workers = api.get("/api/v1/workers").json()
    assert len(workers) == 1
    worker = workers[0]
    assert set(worker) == {
        "worker_id",
        "registered_at",
        "last_heartbeat",
        "current_tasks",
        "cpu_usage_percent",
        "memory_usage_mb",
        # beyond the contract
        "task_types",
        "concurrency",
        "status",
    }
    assert (worker["task_types"], worker["concurrency"], worker["status"]) == (
        ["send_email"],
        4,
        "online",
    )
    assert (
        worker["worker_id"],
        worker["current_tasks"],
        worker["cpu_usage_percent"],
        worker["memory_usage_mb"],
    ) == ("worker-host-12345-abc123", 3, 45.2, 256)


def test_health_is_200_healthy_and_reports_leadership(api: TestClient) -> None:
    api.post("/api/v1/tasks", json={"task_type": "noop"})
    deadline = time.monotonic() + 10
    while not (health := api.get("/health")).json()["is_leader"]:
        assert time.monotonic() < deadline, "this only replica never became leader"
        time.sleep(0.05)
    assert health.status_code == 200
    assert health.json() == {
        "status": "healthy",
        "is_leader": True,
        "connected_workers": 0,
        "pending_tasks": 1,
    }


def test_health_is_503_degraded_promptly_when_postgres_is_unreachable_then_recovers(
    api: TestClient, pg: EmbeddedPostgres, database: str
) -> None:
    assert api.get("/health").status_code == 200
    with psycopg.connect(pg.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false".encode())
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
        started = time.monotonic()
        degraded = api.get("/health")
        elapsed = time.monotonic() - started
        assert degraded.status_code == 503
        assert degraded.json()["status"] == "degraded"
        assert elapsed < 4.0, f"/health took {elapsed:.1f}s with the database gone"
        submit = api.post("/api/v1/tasks", json={"task_type": "noop"})
        assert submit.status_code == 503
        assert "error" in submit.json()
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true".encode())
    deadline = time.monotonic() + 15
    while api.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "broker did not recover after the database came back"
        time.sleep(0.2)
    assert api.post("/api/v1/tasks", json={"task_type": "noop"}).status_code == 201


def test_queue_depth_counts_ready_scheduled_and_running_per_task_type(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    for _ in range(3):
        api.post("/api/v1/tasks", json={"task_type": "resize"})
    api.post("/api/v1/tasks", json={"task_type": "resize", "schedule_at": "2099-01-01T00:00:00Z"})
    api.post("/api/v1/tasks", json={"task_type": "email"})
    api.post("/api/v1/tasks", json={"task_type": "other"})
    db.execute("UPDATE tq_tasks SET status = 'in_progress' WHERE task_type = 'email'")
    depth = api.get(
        "/api/v1/queue-depth", params=[("task_type", "resize"), ("task_type", "email")]
    ).json()
    assert depth == {
        "task_types": ["resize", "email"],
        "ready": 3,
        "scheduled": 1,
        "in_progress": 1,
        "unserved_task_types": ["resize"],  # ready, and no worker online for it
    }
    assert api.get("/api/v1/queue-depth").status_code == 400
    assert api.get("/api/v1/queue-depth", params={"task_type": "bad type"}).status_code == 400
