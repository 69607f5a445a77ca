"""GET /api/v1/tasks/{id}?wait=: long-polls until the task is finished, woken by the event
fan-out, holding no database connection; on real PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.api.deps import broker_of
from tq_broker.app import create_app
from tq_broker.settings import BrokerSettings
from tq_broker.task_waits import TaskWaits

from ..conftest import LOOPBACK
from .test_worker_protocol import claim, lease, register, submit

WORKER = "worker-test-1-aaaaaa"


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    # One pooled connection: a waiter that held one would starve every other request.
    return BrokerSettings(
        database_url=database_url,
        auth="off",
        pool_min_connections=1,
        pool_max_connections=1,
        max_task_waiters=5,
    )


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def get(api: TestClient, task_id: str, wait: float | str) -> Any:
    return api.get(f"/api/v1/tasks/{task_id}", params={"wait": wait})


def waits_of(api: TestClient) -> TaskWaits:
    return broker_of(api.app).task_waits  # type: ignore[arg-type]


def until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def complete(api: TestClient, task: dict[str, Any]) -> None:
    response = api.post(
        "/api/v1/tasks/complete",
        json={"worker_id": WORKER, "tasks": [{**lease(task), "result": "aGk="}]},
    )
    assert response.status_code == 200, response.text


def test_a_waiter_is_answered_when_its_task_completes_not_when_time_is_up(
    api: TestClient, pool: ThreadPoolExecutor
) -> None:
    register(api)
    task_id = submit(api)
    started = time.monotonic()
    answer: Future[Any] = pool.submit(get, api, task_id, 30)
    until(lambda: waits_of(api).active == 1, "the request waits")
    [task] = claim(api)
    complete(api, task)
    response = answer.result(timeout=20)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert (body["task_id"], body["status"], body["result"]) == (task_id, "completed", "aGk=")
    assert elapsed < 15, f"answered after {elapsed:.1f}s of a 30 s wait"
    assert waits_of(api).active == 0


def test_dead_letter_and_cancel_end_a_wait_too(api: TestClient, pool: ThreadPoolExecutor) -> None:
    register(api)
    doomed = submit(api, max_retries=0)
    cancelled = submit(api, schedule_at="2099-01-01T00:00:00Z")
    answers = [pool.submit(get, api, t, 30) for t in (doomed, cancelled)]
    until(lambda: waits_of(api).active == 2, "both requests wait")
    [task] = claim(api)
    failed = api.post(
        "/api/v1/tasks/fail", json={"worker_id": WORKER, "tasks": [{**lease(task), "error": "E"}]}
    )
    assert failed.status_code == 200
    assert api.delete(f"/api/v1/tasks/{cancelled}").status_code == 204
    statuses = [a.result(timeout=20).json()["status"] for a in answers]
    assert statuses == ["dead_letter", "cancelled"]


def test_a_finished_task_answers_at_once_and_time_up_answers_the_current_state(
    api: TestClient,
) -> None:
    register(api)
    task_id = submit(api)
    [task] = claim(api)
    complete(api, task)
    assert get(api, task_id, 60).json()["status"] == "completed"
    waiting = submit(api, schedule_at="2099-01-01T00:00:00Z")
    started = time.monotonic()
    response = get(api, waiting, 0.3)
    assert time.monotonic() - started >= 0.3
    assert (response.status_code, response.json()["status"]) == (200, "pending")
    assert get(api, waiting, 0).json()["status"] == "pending"  # 0: no wait at all


def test_waiters_hold_no_database_connection(api: TestClient, pool: ThreadPoolExecutor) -> None:
    register(api)
    ids = [submit(api) for _ in range(5)]
    answers = [pool.submit(get, api, t, 30) for t in ids]
    until(lambda: waits_of(api).active == 5, "five requests wait")
    # The pool has one connection; five waiters are waiting, and everything else still runs.
    assert api.get("/api/v1/stats").status_code == 200
    for task in claim(api):
        complete(api, task)
    assert {a.result(timeout=20).json()["status"] for a in answers} == {"completed"}


def test_past_the_cap_a_waiter_is_refused_with_503_and_retry_after(
    api: TestClient, pool: ThreadPoolExecutor
) -> None:
    ids = [submit(api, schedule_at="2099-01-01T00:00:00Z") for _ in range(6)]
    answers = [pool.submit(get, api, t, 30) for t in ids[:5]]
    until(lambda: waits_of(api).active == 5, "five requests wait")
    refused = get(api, ids[5], 30)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "waiting" in refused.json()["error"]
    assert get(api, ids[5], 0).status_code == 200  # a plain GET is not a waiter
    for task_id in ids[:5]:
        assert api.delete(f"/api/v1/tasks/{task_id}").status_code == 204
    assert {a.result(timeout=20).json()["status"] for a in answers} == {"cancelled"}


@pytest.mark.parametrize("wait", ["-1", "61", "abc", "", "nan", "inf", "1e9", "true"])
def test_bad_wait_values_are_400(api: TestClient, wait: str) -> None:
    task_id = submit(api)
    response = get(api, task_id, wait)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("wait:")


def test_an_unknown_task_is_404_at_once_with_or_without_wait(api: TestClient) -> None:
    for wait in (0, 30):
        response = get(api, str(uuid.uuid4()), wait)
        assert response.status_code == 404
        assert "not found" in response.json()["error"]
    assert waits_of(api).active == 0


def test_shutdown_answers_every_waiter_with_what_it_has(settings: BrokerSettings) -> None:
    app = create_app(settings)
    with TestClient(app, base_url=LOOPBACK) as api:
        task_id = submit(api, schedule_at="2099-01-01T00:00:00Z")
        results: list[Any] = []
        thread = threading.Thread(target=lambda: results.append(get(api, task_id, 60)))
        thread.start()
        until(lambda: waits_of(api).active == 1, "the request waits")
        waits_of(api).close()
        thread.join(20)
        assert not thread.is_alive()
    assert (results[0].status_code, results[0].json()["status"]) == (200, "pending")


def test_a_listener_reconnect_makes_every_waiter_read_its_task_again(
    api: TestClient, pool: ThreadPoolExecutor, db: psycopg.Connection[dict[str, Any]]
) -> None:
    """Notifications sent while the LISTEN connection was down are lost: the reconnect itself
    must make waiters look again."""
    task_id = submit(api, schedule_at="2099-01-01T00:00:00Z")
    answer: Future[Any] = pool.submit(get, api, task_id, 60)
    until(lambda: waits_of(api).active == 1, "the request waits")
    # Finished behind the broker's back (no event), while its listener is cut off.
    db.execute(
        "UPDATE tq_tasks SET status = 'completed', finished_at = now() WHERE task_id = %s",
        (task_id,),
    )
    killed = db.execute(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
        "WHERE application_name = 'tq-listener' AND datname = current_database()"
    ).fetchone()
    assert killed is not None and killed["n"] == 1
    response = answer.result(timeout=30)
    assert response.json()["status"] == "completed"


def test_a_wait_past_the_replicas_limit_answers_at_the_limit(settings: BrokerSettings) -> None:
    limited = settings.model_copy(update={"task_wait_max_seconds": 0.2})
    with TestClient(create_app(limited), base_url=LOOPBACK) as api:
        task_id = submit(api, schedule_at="2099-01-01T00:00:00Z")
        started = time.monotonic()
        response = get(api, task_id, 60)
        assert (response.status_code, response.json()["status"]) == (200, "pending")
        assert time.monotonic() - started < 30, "waited for the asked 60 s, not the limit"
