"""Every attempt of a task kept and shown: GET /api/v1/tasks/{id}/attempts, on real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.events import EventPublisher
from tq_broker.maintenance.cleaner import Cleaner, CleanerConfig
from tq_broker.maintenance.rescuer import Rescuer, RescuerConfig
from tq_broker.settings import BrokerSettings
from tq_client.models import ATTEMPTS_KEPT

from .test_worker_protocol import claim, lease, register, submit

WORKER = "worker-test-1-aaaaaa"


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    # No backoff: a failed task is claimable again at once.
    return BrokerSettings(database_url=database_url, auth="off", backoff_base_seconds=0)


def fail(api: TestClient, task: dict[str, Any], error: str, **fields: Any) -> None:
    response = api.post(
        "/api/v1/tasks/fail",
        json={"worker_id": WORKER, "tasks": [{**lease(task), "error": error, **fields}]},
    )
    assert response.status_code == 200, response.text


def attempts(api: TestClient, task_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/tasks/{task_id}/attempts")
    assert response.status_code == 200, response.text
    return list(response.json())


def test_each_attempt_keeps_its_worker_outcome_and_error_oldest_first(api: TestClient) -> None:
    register(api)
    task_id = submit(api)
    assert attempts(api, task_id) == []
    [first] = claim(api)
    fail(api, first, "ValueError: first\nTraceback (most recent call last): ...")
    [second] = claim(api)
    running = attempts(api, task_id)
    assert [(a["attempt"], a["outcome"], a["finished_at"]) for a in running][1] == (2, None, None)
    released = api.post(
        "/api/v1/tasks/release", json={"worker_id": WORKER, "tasks": [lease(second)]}
    )
    assert released.status_code == 200
    [third] = claim(api)
    done = api.post("/api/v1/tasks/complete", json={"worker_id": WORKER, "tasks": [lease(third)]})
    assert done.status_code == 200

    history = attempts(api, task_id)
    assert [(a["attempt"], a["worker_id"], a["outcome"]) for a in history] == [
        (1, WORKER, "failed"),
        (2, WORKER, "released"),
        (3, WORKER, "completed"),
    ]
    assert history[0]["error"] == "ValueError: first\nTraceback (most recent call last): ..."
    assert [a["error"] for a in history[1:]] == [None, None]
    assert all(a["finished_at"] >= a["claimed_at"] for a in history)
    # The task's own error is the latest failure's; a success clears it; releases are no retry.
    task = api.get(f"/api/v1/tasks/{task_id}").json()
    assert (task["status"], task["error"], task["retry_count"]) == ("completed", None, 1)


def test_a_rescued_attempt_is_expired_with_the_reason(
    api: TestClient, db: psycopg.Connection[dict[str, Any]], database_url: str
) -> None:
    register(api)
    task_id = submit(api)
    claim(api)
    db.execute("UPDATE tq_tasks SET lease_expires_at = now() WHERE task_id = %s", (task_id,))

    async def rescue() -> None:
        connector = Connector(ConnectorConfig(database_url, min_connections=1))
        await connector.open()
        try:
            await Rescuer(connector, RescuerConfig(), EventPublisher(connector)).run_once()
        finally:
            await connector.close()

    api.portal.call(rescue)  # type: ignore[union-attr]
    [attempt] = attempts(api, task_id)
    assert attempt["outcome"] == "expired"
    assert attempt["error"].startswith(f"lease expired: worker {WORKER}")


def test_only_the_last_attempts_are_kept(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api)
    task_id = submit(api, max_retries=100)
    total = ATTEMPTS_KEPT + 3
    for _ in range(total):
        [task] = claim(api)
        fail(api, task, "boom")
    history = attempts(api, task_id)
    assert [a["attempt"] for a in history] == list(range(total - ATTEMPTS_KEPT + 1, total + 1))
    count = db.execute(
        "SELECT count(*) AS n FROM tq_task_attempts WHERE task_id = %s", (task_id,)
    ).fetchone()
    assert count is not None and count["n"] == ATTEMPTS_KEPT


def test_attempts_go_with_their_task_when_the_cleaner_deletes_it(
    api: TestClient, db: psycopg.Connection[dict[str, Any]], database_url: str
) -> None:
    register(api)
    task_id = submit(api)
    [task] = claim(api)
    api.post("/api/v1/tasks/complete", json={"worker_id": WORKER, "tasks": [lease(task)]})
    db.execute(
        "UPDATE tq_tasks SET finished_at = now() - interval '8 days' WHERE task_id = %s", (task_id,)
    )

    async def clean() -> None:
        connector = Connector(ConnectorConfig(database_url, min_connections=1))
        await connector.open()
        try:
            await Cleaner(connector, CleanerConfig()).run_once()
        finally:
            await connector.close()

    api.portal.call(clean)  # type: ignore[union-attr]
    assert api.get(f"/api/v1/tasks/{task_id}/attempts").status_code == 404
    left = db.execute("SELECT count(*) AS n FROM tq_task_attempts").fetchone()
    assert left is not None and left["n"] == 0


def test_attempts_of_an_unknown_or_malformed_task_id_are_404_and_400(api: TestClient) -> None:
    unknown = api.get(f"/api/v1/tasks/{uuid.uuid4()}/attempts")
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["error"]
    malformed = api.get("/api/v1/tasks/not-a-uuid/attempts")
    assert malformed.status_code == 400
    assert "error" in malformed.json()
    assert api.post(f"/api/v1/tasks/{uuid.uuid4()}/attempts").status_code == 405
