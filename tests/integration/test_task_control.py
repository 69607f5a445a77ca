"""Aborting tasks and their progress, on the broker side, against real PostgreSQL: the abort
route's answers, the heartbeat that carries progress in and the abort out, and the rule that
an aborted task ends cancelled whatever its worker reports (or if it dies), never retried."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.events import EventPublisher, TaskEvent, decode_events, encode_events
from tq_broker.maintenance.rescuer import Rescuer, RescuerConfig
from tq_broker.settings import BrokerSettings
from tq_broker.worker_store import LeaseConfig, WorkerStore
from tq_client.protocol import HeartbeatRequest, Lease, ProgressReport, RegisterWorkerRequest

WORKER = "worker-control-1-aaaaaa"


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    # No backoff: a failed attempt would be claimable again at once (so a retry would show).
    return BrokerSettings(database_url=database_url, auth="off", backoff_base_seconds=0)


def register(api: TestClient) -> None:
    response = api.post(
        "/api/v1/workers", json={"worker_id": WORKER, "task_types": ["slow"], "concurrency": 4}
    )
    assert response.status_code == 201, response.text


def submit(api: TestClient, **fields: Any) -> str:
    response = api.post("/api/v1/tasks", json={"task_type": "slow", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


def claim(api: TestClient) -> list[dict[str, Any]]:
    response = api.post("/api/v1/tasks/claim", json={"worker_id": WORKER, "max_tasks": 10})
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])


def running(api: TestClient, **fields: Any) -> dict[str, Any]:
    """A task claimed by WORKER."""
    task_id = submit(api, **fields)
    (task,) = [t for t in claim(api) if t["task_id"] == task_id]
    return task


def lease(task: dict[str, Any]) -> dict[str, str]:
    return {"task_id": task["task_id"], "lease_token": task["lease_token"]}


def beat(api: TestClient, tasks: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    response = api.post(
        f"/api/v1/workers/{WORKER}/heartbeat",
        json={"leases": [lease(t) for t in tasks], **fields},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def get(api: TestClient, task_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200
    return dict(response.json())


def abort(api: TestClient, task_id: str) -> Any:
    return api.post(f"/api/v1/tasks/{task_id}/abort")


def test_aborting_a_pending_task_cancels_it_at_once_and_records_who_and_when(
    api: TestClient,
) -> None:
    register(api)
    task_id = submit(api)
    response = abort(api, task_id)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["task_id"], answer["status"]) == (task_id, "cancelled")
    assert answer["aborted_by"] == "anonymous (auth off)"
    task = get(api, task_id)
    assert task["status"] == "cancelled"
    assert (task["aborted_at"], task["aborted_by"]) == (answer["aborted_at"], answer["aborted_by"])
    assert claim(api) == []


def test_aborting_a_running_task_marks_it_and_its_next_heartbeat_says_abort(
    api: TestClient,
) -> None:
    register(api)
    task, other = running(api), running(api)
    assert beat(api, [task, other])["abort"] == []
    response = abort(api, task["task_id"])
    assert response.status_code == 202, response.text
    first = response.json()
    assert first["status"] == "in_progress"
    shown = get(api, task["task_id"])
    assert (shown["status"], shown["aborted_at"]) == ("in_progress", first["aborted_at"])
    answer = beat(api, [task, other])
    assert answer["abort"] == [task["task_id"]]
    assert answer["renewed"] == [task["task_id"], other["task_id"]]  # still its lease
    again = abort(api, task["task_id"])  # a repeat answers as the first did
    assert (again.status_code, again.json()) == (202, first)


@pytest.mark.parametrize("report", ["fail", "complete"])
def test_an_aborted_task_ends_cancelled_whatever_its_worker_reports_and_is_not_retried(
    api: TestClient, report: str
) -> None:
    register(api)
    task = running(api, max_retries=3)
    assert abort(api, task["task_id"]).status_code == 202
    outcome = {"fail": {"error": "CancelledError: aborted"}, "complete": {"result": "b2s="}}
    response = api.post(
        f"/api/v1/tasks/{report}",
        json={"worker_id": WORKER, "tasks": [{**lease(task), **outcome[report]}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == [task["task_id"]]
    shown = get(api, task["task_id"])
    assert (shown["status"], shown["retry_count"]) == ("cancelled", 0)
    assert shown["aborted_by"] == "anonymous (auth off)"
    assert claim(api) == []  # no retry


def test_a_task_aborted_while_claimed_but_not_started_is_cancelled_by_its_release(
    api: TestClient,
) -> None:
    """A draining worker hands back what never started: an aborted one is not pending again."""
    register(api)
    task, other = running(api), running(api)
    assert abort(api, task["task_id"]).status_code == 202
    response = api.post(
        "/api/v1/tasks/release", json={"worker_id": WORKER, "tasks": [lease(task), lease(other)]}
    )
    assert response.status_code == 200, response.text
    assert get(api, task["task_id"])["status"] == "cancelled"
    assert get(api, other["task_id"])["status"] == "pending"
    assert [t["task_id"] for t in claim(api)] == [other["task_id"]]


def test_a_finished_task_cannot_be_aborted_and_an_unknown_one_is_not_found(
    api: TestClient,
) -> None:
    register(api)
    task = running(api)
    done = api.post("/api/v1/tasks/complete", json={"worker_id": WORKER, "tasks": [lease(task)]})
    assert done.status_code == 200
    conflict = abort(api, task["task_id"])
    assert conflict.status_code == 409
    assert "completed" in conflict.json()["error"]
    assert get(api, task["task_id"])["aborted_at"] is None  # the refusal wrote nothing
    cancelled = submit(api)
    assert api.delete(f"/api/v1/tasks/{cancelled}").status_code == 204
    assert abort(api, cancelled).status_code == 409
    missing = abort(api, "0193a3f0-0000-7000-8000-000000000001")
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}
    assert abort(api, "not-a-uuid").status_code == 400
    assert api.get(f"/api/v1/tasks/{cancelled}/abort").status_code == 405


def test_progress_rides_on_heartbeats_last_value_wins_and_a_new_claim_starts_over(
    api: TestClient,
) -> None:
    register(api)
    task = running(api, max_retries=1)
    assert get(api, task["task_id"])["progress"] is None
    beat(api, [task], progress=[{"task_id": task["task_id"], "fraction": 0.25, "message": "a"}])
    first = get(api, task["task_id"])["progress"]
    assert (first["fraction"], first["message"]) == (0.25, "a")
    assert first["updated_at"].endswith("Z")
    beat(api, [task])  # a beat without progress keeps the last value
    assert get(api, task["task_id"])["progress"] == first
    beat(api, [task], progress=[{"task_id": task["task_id"], "fraction": 1}])
    latest = get(api, task["task_id"])["progress"]
    assert (latest["fraction"], latest["message"]) == (1.0, None)
    failed = api.post(
        "/api/v1/tasks/fail",
        json={"worker_id": WORKER, "tasks": [{**lease(task), "error": "boom"}]},
    )
    assert failed.status_code == 200
    (again,) = claim(api)  # the retry is a new attempt: no progress yet
    assert again["task_id"] == task["task_id"]
    assert get(api, task["task_id"])["progress"] is None


def test_progress_for_a_lease_the_heartbeat_does_not_renew_is_ignored(api: TestClient) -> None:
    register(api)
    task, other = running(api), running(api)
    beat(api, [task], progress=[{"task_id": other["task_id"], "fraction": 0.5}])
    assert get(api, other["task_id"])["progress"] is None


@pytest.mark.parametrize(
    "report",
    [
        {"fraction": 1.5},
        {"fraction": -0.1},
        {"fraction": "0.5"},
        {"fraction": True},
        {"fraction": 0.5, "message": "x" * 501},
        {"fraction": 0.5, "message": 7},
        {},
    ],
)
def test_bad_progress_is_a_400_and_renews_nothing(api: TestClient, report: dict[str, Any]) -> None:
    register(api)
    task = running(api)
    response = api.post(
        f"/api/v1/workers/{WORKER}/heartbeat",
        json={"leases": [lease(task)], "progress": [{"task_id": task["task_id"], **report}]},
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert get(api, task["task_id"])["progress"] is None


async def test_the_rescuer_cancels_an_aborted_task_whose_worker_died_or_never_stops_it(
    database_url: str,
) -> None:
    """Lease expired (the worker died) or still heartbeating past the abort's grace plus the
    deadline grace (the worker does not stop it): cancelled, not retried."""
    connector = Connector(ConnectorConfig(database_url, min_connections=1))
    await connector.open()
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO tq_tasks (task_id, task_type, payload, priority, status,"
                " timeout_seconds, max_retries, worker_id, lease_token, claimed_at,"
                " lease_expires_at, abort_requested_at, aborted_by) VALUES"
                " (gen_random_uuid(), 'slow', '', 100, 'in_progress', 300, 3, 'w',"
                "  gen_random_uuid(), now(), now() - interval '1 second', now(), 'dead'),"
                " (gen_random_uuid(), 'slow', '', 100, 'in_progress', 300, 3, 'w',"
                "  gen_random_uuid(), now(), now() + interval '1 hour',"
                "  now() - interval '41 seconds', 'stubborn'),"
                " (gen_random_uuid(), 'slow', '', 100, 'in_progress', 300, 3, 'w',"
                "  gen_random_uuid(), now(), now() + interval '1 hour',"
                "  now() - interval '39 seconds', 'within its grace'),"
                " (gen_random_uuid(), 'slow', '', 100, 'in_progress', 300, 3, 'w',"
                "  gen_random_uuid(), now(), now() - interval '1 second', NULL, NULL)"
            )
            config = RescuerConfig(deadline_grace_seconds=30, abort_grace_seconds=10)
            result = await Rescuer(connector, config, EventPublisher(connector)).run_once()
            assert (result.cancelled, result.retried, result.dead_lettered) == (2, 1, 0)
            cursor = await conn.execute(
                "SELECT aborted_by, status, retry_count, error, finished_at IS NOT NULL"
                " FROM tq_tasks ORDER BY aborted_by"
            )
            rows = await cursor.fetchall()
    finally:
        await connector.close()
    assert [row[:3] for row in rows] == [
        ("dead", "cancelled", 0),
        ("stubborn", "cancelled", 0),
        ("within its grace", "in_progress", 0),
        (None, "failed", 1),
    ]
    assert rows[0][3].startswith("lease expired") and rows[0][4]
    assert rows[1][3].startswith("aborted: worker w did not stop the task") and rows[1][4]


def test_events_carry_progress_and_the_abort_through_the_notify_round_trip() -> None:
    events = [
        TaskEvent("id-1", "slow", "in_progress", "2026-01-01T12:00:00Z"),
        TaskEvent(
            "id-2",
            "slow",
            "in_progress",
            "2026-01-01T12:00:01Z",
            progress=(0.5, "ü" * 500, "2026-01-01T12:00:01Z"),
            aborted=("2026-01-01T12:00:00Z", "ops (0193a3f0-0000-7000-8000-000000000001)"),
        ),
    ]
    payloads = encode_events(events)
    assert [e for p in payloads for e in decode_events(p)] == events


class RecordingPublisher(EventPublisher):
    """The replica's publisher, remembering what passed through it."""

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector, on_change=lambda rows: self.counted.extend(rows))
        self.published: list[Mapping[str, Any]] = []
        self.counted: list[Mapping[str, Any]] = []

    async def publish_rows(
        self, rows: Iterable[Mapping[str, Any]], transitions: bool = True
    ) -> None:
        rows = list(rows)
        self.published.extend(rows)
        await super().publish_rows(rows, transitions)


async def test_a_heartbeat_with_progress_publishes_an_event_that_is_not_a_transition(
    database_url: str,
) -> None:
    connector = Connector(ConnectorConfig(database_url, min_connections=1))
    await connector.open()
    try:
        events = RecordingPublisher(connector)
        store = WorkerStore(connector, LeaseConfig(), events)
        await store.worker_register(
            RegisterWorkerRequest(worker_id=WORKER, task_types=["slow"], concurrency=1)
        )
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds,"
                " max_retries) VALUES (gen_random_uuid(), 'slow', '', 100, 300, 0)"
            )
        (task,) = (await store.task_claim(WORKER, 1)).tasks
        events.published.clear()
        events.counted.clear()
        held = Lease(task_id=task.task_id, lease_token=task.lease_token)
        await store.worker_heartbeat(WORKER, HeartbeatRequest(leases=[held]))
        assert events.published == []  # a plain renewal is no event
        report = ProgressReport(task_id=task.task_id, fraction=0.75, message="three quarters")
        await store.worker_heartbeat(WORKER, HeartbeatRequest(leases=[held], progress=[report]))
        (row,) = events.published
        event = TaskEvent.from_row(row)
        assert event.status == "in_progress"
        assert event.progress is not None and event.progress[:2] == (0.75, "three quarters")
        assert events.counted == []  # the transition counters (metrics) saw no status change
    finally:
        await connector.close()
