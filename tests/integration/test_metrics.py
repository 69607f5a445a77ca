"""Prometheus metrics after a known workload, parsed with the Prometheus text parser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tq_broker.app import create_app
from tq_broker.settings import BrokerSettings

from ..conftest import LOOPBACK
from ..support.processes import BrokerProcess, free_port

METRICS_ADMIN = "metrics-admin-key-0123456789abcdef"

WORKER = "worker-metrics-1-abcdef"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def metered(database_url: str) -> Iterator[TestClient]:
    settings = BrokerSettings(database_url=database_url, auth="off", metrics_refresh_seconds=0.1)
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        yield client


def test_metrics_count_a_known_workload(metered: TestClient) -> None:
    api = metered
    for task_type in ("a", "a", "a", "b"):
        api.post("/api/v1/tasks", json={"task_type": task_type, "max_retries": 0})
    api.post("/api/v1/tasks", json={"task_type": "a", "priority": 250})
    api.post("/api/v1/workers", json={"worker_id": WORKER, "task_types": ["a"], "concurrency": 3})
    claimed = api.post("/api/v1/tasks/claim", json={"worker_id": WORKER, "max_tasks": 3}).json()
    leases = [{"task_id": t["task_id"], "lease_token": t["lease_token"]} for t in claimed["tasks"]]
    api.post("/api/v1/tasks/complete", json={"worker_id": WORKER, "tasks": leases[:2]})
    api.post(
        "/api/v1/tasks/fail", json={"worker_id": WORKER, "tasks": [{**leases[2], "error": "boom"}]}
    )

    deadline = time.monotonic() + 15
    while True:
        found = samples(api.get("/metrics").text)
        # The leader's snapshot may be from any moment of the workload: wait for one taken after
        # the submits (a normal "a" pending), the registration, the claim (the priority-250 task
        # no longer pending) and the last report (nothing in progress). Before the claim,
        # nothing is in progress either: that alone does not tell the end state.
        submitted = (
            value(found, "tq_tasks_pending_by_type", task_type="a", priority="normal") is not None
        )
        claimed = value(found, "tq_tasks_pending_by_type", task_type="a", priority="high") is None
        registered = value(found, "tq_workers_connected") == 1
        if submitted and claimed and registered and value(found, "tq_tasks_in_progress") == 0:
            break
        assert time.monotonic() < deadline, "the leader never exported the queue state"
        time.sleep(0.1)

    assert value(found, "tq_tasks_total", status="pending", task_type="a") == 4
    assert value(found, "tq_tasks_total", status="pending", task_type="b") == 1
    assert value(found, "tq_tasks_total", status="in_progress", task_type="a") == 3
    assert value(found, "tq_tasks_total", status="completed", task_type="a") == 2
    assert value(found, "tq_task_duration_seconds_count", task_type="a") == 2
    assert value(found, "tq_task_queue_wait_seconds_count", task_type="a") == 3
    # The claim took the priority-250 task and two normal ones: one normal "a" still waits.
    assert value(found, "tq_tasks_pending_by_type", task_type="a", priority="normal") == 1
    assert value(found, "tq_tasks_pending_by_type", task_type="a", priority="high") is None
    assert value(found, "tq_tasks_pending_by_type", task_type="b", priority="normal") == 1
    # The contract's unlabelled total, and the gauges dashboards and alerts need.
    assert value(found, "tq_tasks_pending") == 2
    assert value(found, "tq_tasks_scheduled") == 0
    assert value(found, "tq_tasks_dead_letter", task_type="a") == 1  # max_retries 0, failed once
    assert value(found, "tq_tasks_dead_letter", task_type="b") is None
    for task_type in ("a", "b"):
        oldest = value(found, "tq_oldest_pending_age_seconds", task_type=task_type)
        assert oldest is not None and oldest >= 0
    assert value(found, "tq_leader") == 1
    assert (
        value(found, "tq_http_requests_total", method="POST", route="/api/v1/tasks", code="201")
        == 5
    )
    assert (
        value(
            found,
            "tq_http_request_duration_seconds_count",
            method="POST",
            route="/api/v1/tasks/claim",
        )
        == 1
    )


def leader_samples(api: TestClient, ready: Any) -> dict[Any, float]:
    """Scrape until the leader's snapshot satisfies `ready(found)` (15 s at most)."""
    deadline = time.monotonic() + 15
    while True:
        found = samples(api.get("/metrics").text)
        if ready(found):
            return found
        assert time.monotonic() < deadline, "the leader never exported the expected state"
        time.sleep(0.1)


def test_queue_gauges_are_zero_not_absent_when_the_queue_is_empty(metered: TestClient) -> None:
    found = leader_samples(metered, lambda f: value(f, "tq_leader") == 1)
    found = leader_samples(metered, lambda f: value(f, "tq_tasks_pending") is not None)
    for name in ("tq_tasks_pending", "tq_tasks_scheduled", "tq_tasks_in_progress"):
        assert value(found, name) == 0, name
    assert value(found, "tq_workers_connected") == 0
    assert not [name for name, _ in found if name == "tq_tasks_pending_by_type"]

    later = "2999-01-01T00:00:00Z"
    metered.post("/api/v1/tasks", json={"task_type": "later", "schedule_at": later})
    found = leader_samples(metered, lambda f: value(f, "tq_tasks_scheduled") == 1)
    assert value(found, "tq_tasks_pending") == 1  # a scheduled task is pending, as in /stats
    # Nothing of that type is ready, so nothing has waited.
    assert value(found, "tq_oldest_pending_age_seconds", task_type="later") == 0


def test_failed_attempts_dead_letter_is_counted(metered: TestClient) -> None:
    api = metered
    api.post("/api/v1/tasks", json={"task_type": "a", "max_retries": 0})
    api.post("/api/v1/workers", json={"worker_id": WORKER, "task_types": ["a"], "concurrency": 1})
    task = api.post("/api/v1/tasks/claim", json={"worker_id": WORKER}).json()["tasks"][0]
    api.post(
        "/api/v1/tasks/fail",
        json={
            "worker_id": WORKER,
            "tasks": [
                {"task_id": task["task_id"], "lease_token": task["lease_token"], "error": "x"}
            ],
        },
    )
    found = samples(api.get("/metrics").text)
    assert value(found, "tq_tasks_total", status="dead_letter", task_type="a") == 1


def test_rate_limited_requests_are_counted(database_url: str) -> None:
    settings = BrokerSettings(
        database_url=database_url,
        auth="on",
        admin_api_key=METRICS_ADMIN,
        rate_limit_per_second=1,
        rate_limit_burst=2,
    )
    with TestClient(create_app(settings), base_url=LOOPBACK) as api:
        headers = {"Authorization": f"Bearer {METRICS_ADMIN}"}
        codes = [api.get("/api/v1/stats", headers=headers).status_code for _ in range(4)]
        assert codes.count(429) == 2
        found = samples(api.get("/metrics").text)
        assert value(found, "tq_rate_limited_requests_total") == 2


def test_metrics_port_serves_the_same_registry_and_needs_no_key(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    broker = BrokerProcess(
        ["--database-url", database_url],
        tmp_path / "broker.log",
        env={"TQ_METRICS_PORT": str(port), "TQ_AUTH": "on", "TQ_ADMIN_API_KEY": METRICS_ADMIN},
    ).start()
    try:
        httpx.post(
            f"{broker.url}/api/v1/tasks",
            json={"task_type": "x"},
            headers={"Authorization": f"Bearer {METRICS_ADMIN}"},
        )
        on_port = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        on_api = samples(httpx.get(f"{broker.url}/metrics").text)
        for found in (on_port, on_api):
            assert value(found, "tq_tasks_total", status="pending", task_type="x") == 1
    finally:
        broker.stop()


def test_task_type_labels_are_bounded_and_metrics_can_leave_the_api_port(
    database_url: str,
) -> None:
    """One key creating 50,000 task types once grew /metrics to 15 MB."""
    settings = BrokerSettings(
        database_url=database_url,
        auth="off",
        metrics_refresh_seconds=0.1,
        metrics_task_types_max=5,
    )
    with TestClient(create_app(settings), base_url=LOOPBACK) as api:
        batch = {"tasks": [{"task_type": f"type-{n}"} for n in range(40)]}
        assert api.post("/api/v1/tasks/batch", json=batch).status_code == 201
        deadline = time.monotonic() + 15
        while True:
            found = samples(api.get("/metrics").text)
            pending = {
                dict(labels)["task_type"]
                for name, labels in found
                if name == "tq_tasks_pending_by_type"
            }
            if pending or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        created = {dict(labels)["task_type"] for name, labels in found if name == "tq_tasks_total"}
        assert len(created) == 6 and "other" in created, created
        assert len(pending) == 6 and "other" in pending, pending
        assert value(found, "tq_tasks_total", status="pending", task_type="other") == 35
    hidden = BrokerSettings(database_url=database_url, auth="off", metrics_on_api_port=False)
    with TestClient(create_app(hidden), base_url=LOOPBACK) as api:
        response = api.get("/metrics")
        assert response.status_code == 404
        assert "metrics port" in response.json()["error"]


def test_submits_are_counted_under_their_route_whichever_path_answers(database_url: str) -> None:
    """The submit's fast path answers valid submits and streamed oversize bodies itself; the
    FastAPI route answers refusals. All of them count under the route, not as "unmatched"."""
    settings = BrokerSettings(database_url=database_url, auth="off", max_payload_bytes=1024)
    with TestClient(create_app(settings), base_url=LOOPBACK) as api:
        assert api.post("/api/v1/tasks", json={"task_type": "a"}).status_code == 201
        assert api.post("/api/v1/tasks", json={"task_type": "bad type"}).status_code == 400

        def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies while reading
            yield b'{"task_type": "a", "payload": "'
            for _ in range(settings.max_body_bytes // 1000 + 1):
                yield b"A" * 1000
            yield b'"}'

        streamed = api.post(
            "/api/v1/tasks", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert "larger than the limit" in streamed.json()["error"]
        found = samples(api.get("/metrics").text)
    for code in ("201", "400", "413"):
        counted = value(
            found, "tq_http_requests_total", method="POST", route="/api/v1/tasks", code=code
        )
        assert counted == 1, code
    unmatched = value(found, "tq_http_requests_total", method="POST", route="unmatched", code="413")
    assert unmatched is None
