"""Per-type defaults registered by workers, and a worker's own retry delay, on real PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.settings import BrokerSettings

from .test_worker_protocol import claim, lease

WORKER = "worker-test-1-aaaaaa"


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    # A default backoff long enough that "due now" can only come from the worker's own delay.
    return BrokerSettings(database_url=database_url, auth="off", backoff_base_seconds=3600)


def register(
    api: TestClient,
    options: dict[str, Any],
    worker_id: str = WORKER,
    types: list[str] | None = None,
) -> Any:
    return api.post(
        "/api/v1/workers",
        json={
            "worker_id": worker_id,
            "task_types": types or ["resize", "email"],
            "concurrency": 2,
            "task_options": options,
        },
    )


def limits(db: psycopg.Connection[dict[str, Any]], task_id: str) -> tuple[int, int]:
    row = db.execute(
        "SELECT max_retries, timeout_seconds FROM tq_tasks WHERE task_id = %s", (task_id,)
    ).fetchone()
    assert row is not None
    return row["max_retries"], row["timeout_seconds"]


def submit(api: TestClient, **fields: Any) -> str:
    response = api.post("/api/v1/tasks", json={"task_type": "resize", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


def test_a_submit_that_omits_limits_gets_the_types_registered_defaults(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    before = submit(api)
    assert limits(db, before) == (3, 300)  # nothing registered yet: the contract's defaults
    response = register(api, {"resize": {"max_retries": 7, "timeout_seconds": 45}})
    assert response.status_code == 201, response.text
    assert limits(db, submit(api)) == (7, 45)
    assert limits(db, submit(api, max_retries=1)) == (1, 45)  # an explicit value wins
    assert limits(db, submit(api, max_retries=None, timeout_seconds=900)) == (7, 900)
    other = api.post("/api/v1/tasks", json={"task_type": "email"}).json()["task_id"]
    assert limits(db, other) == (3, 300)  # registered without options
    batch = api.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"task_type": "resize"}, {"task_type": "email", "max_retries": 0}]},
    )
    assert batch.status_code == 201
    ids = [t["task_id"] for t in batch.json()["tasks"]]
    assert [limits(db, i) for i in ids] == [(7, 45), (0, 300)]
    assert api.get(f"/api/v1/tasks/{ids[0]}").json()["max_retries"] == 7


def test_the_latest_registration_of_a_type_sets_its_defaults(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    assert register(api, {"resize": {"max_retries": 7}}).status_code == 201
    assert limits(db, submit(api)) == (7, 300)
    second = register(api, {"resize": {"timeout_seconds": 60}}, worker_id="worker-test-2-bbbbbb")
    assert second.status_code == 201
    assert limits(db, submit(api)) == (3, 60)  # replaced whole, not merged
    assert register(api, {}, types=["resize"]).status_code == 201  # no options: contract's
    assert limits(db, submit(api)) == (3, 300)


def test_bad_task_options_are_400_and_change_nothing(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    for options, needle in [
        ({"thumbnail": {"max_retries": 1}}, "task_options"),
        ({"resize": {"max_retries": 101}}, "max_retries"),
        ({"resize": {"max_retries": -1}}, "max_retries"),
        ({"resize": {"timeout_seconds": 0}}, "timeout_seconds"),
        ({"resize": {"timeout_seconds": 86401}}, "timeout_seconds"),
        ({"resize": {"timeout_seconds": "60"}}, "timeout_seconds"),
        ({"resize": {"retries": 1}}, "retries"),
        ({"resize": 3}, "resize"),
        ({"bad type!": {}}, "task_options"),
        ([], "task_options"),
    ]:
        response = register(api, options)  # type: ignore[arg-type]
        assert response.status_code == 400, (options, response.text)
        assert needle in response.json()["error"], (options, response.json())
    workers = db.execute("SELECT count(*) AS n FROM tq_workers").fetchone()
    defaults = db.execute("SELECT count(*) AS n FROM tq_task_type_defaults").fetchone()
    assert workers is not None and defaults is not None
    assert (workers["n"], defaults["n"]) == (0, 0)


def test_a_workers_retry_delay_replaces_the_default_backoff(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    assert register(api, {}).status_code == 201
    now_due, later = submit(api), submit(api)
    tasks = {t["task_id"]: t for t in claim(api)}
    response = api.post(
        "/api/v1/tasks/fail",
        json={
            "worker_id": WORKER,
            "tasks": [
                {**lease(tasks[now_due]), "error": "E", "retry_delay_seconds": 0},
                {**lease(tasks[later]), "error": "E", "retry_delay_seconds": 120.5},
            ],
        },
    )
    assert response.status_code == 200, response.text
    rows = {
        str(r["task_id"]): r["wait"]
        for r in db.execute(
            "SELECT task_id, extract(epoch FROM run_at - updated_at)::float8 AS wait, status "
            "FROM tq_tasks"
        ).fetchall()
    }
    assert rows[now_due] == 0.0
    assert rows[later] == 120.5
    # Due now: claimable again at once, though the broker's own backoff is an hour.
    assert [t["task_id"] for t in claim(api)] == [now_due]


def test_not_retryable_dead_letters_at_once_whatever_the_delay(api: TestClient) -> None:
    assert register(api, {}).status_code == 201
    task_id = submit(api, max_retries=5)
    [task] = claim(api)
    api.post(
        "/api/v1/tasks/fail",
        json={
            "worker_id": WORKER,
            "tasks": [{**lease(task), "error": "E", "retryable": False, "retry_delay_seconds": 1}],
        },
    )
    assert api.get(f"/api/v1/tasks/{task_id}").json()["status"] == "dead_letter"


def test_bad_retry_delays_and_oversized_errors_are_400(api: TestClient) -> None:
    assert register(api, {}).status_code == 201
    submit(api)
    [task] = claim(api)
    for fields in [
        {"error": "E", "retry_delay_seconds": -1},
        {"error": "E", "retry_delay_seconds": 86_401},
        {"error": "E", "retry_delay_seconds": "5"},
        {"error": "E", "retry_delay_seconds": True},
        {"error": "x" * 16_385},
    ]:
        response = api.post(
            "/api/v1/tasks/fail", json={"worker_id": WORKER, "tasks": [{**lease(task), **fields}]}
        )
        assert response.status_code == 400, (fields, response.text)
    long_error = "Traceback (most recent call last):\n" + "y" * 16_000
    ok = api.post(
        "/api/v1/tasks/fail",
        json={"worker_id": WORKER, "tasks": [{**lease(task), "error": long_error}]},
    )
    assert ok.status_code == 200
    assert api.get(f"/api/v1/tasks/{task['task_id']}").json()["error"] == long_error
