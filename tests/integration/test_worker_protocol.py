"""The worker protocol against real PostgreSQL: claims, leases, results, retries, requeue."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.settings import BrokerSettings

from ..conftest import LOOPBACK


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    # No backoff, so a failed task is claimable again at once.
    return BrokerSettings(
        database_url=database_url,
        auth="off",
        backoff_base_seconds=0,
        claim_poll_interval_seconds=0.2,
    )


def register(
    api: TestClient,
    worker_id: str = "worker-test-1-aaaaaa",
    task_types: tuple[str, ...] = ("noop", "echo"),
) -> dict[str, Any]:
    response = api.post(
        "/api/v1/workers",
        json={"worker_id": worker_id, "task_types": list(task_types), "concurrency": 4},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def submit(api: TestClient, task_type: str = "noop", **fields: Any) -> str:
    response = api.post("/api/v1/tasks", json={"task_type": task_type, **fields})
    assert response.status_code == 201
    return str(response.json()["task_id"])


def claim(
    api: TestClient, worker_id: str = "worker-test-1-aaaaaa", max_tasks: int = 10, wait: float = 0
) -> list[dict[str, Any]]:
    response = api.post(
        "/api/v1/tasks/claim",
        json={"worker_id": worker_id, "max_tasks": max_tasks, "wait_seconds": wait},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])


def lease(task: dict[str, Any]) -> dict[str, str]:
    return {"task_id": task["task_id"], "lease_token": task["lease_token"]}


def test_register_returns_intervals_and_worker_shows_in_the_list(api: TestClient) -> None:
    registered = register(api)
    assert registered["lease_ttl_seconds"] == 30.0
    assert registered["heartbeat_interval_seconds"] == 2.0
    assert [w["worker_id"] for w in api.get("/api/v1/workers").json()] == ["worker-test-1-aaaaaa"]


def test_claim_hands_out_highest_priority_first_then_oldest(api: TestClient) -> None:
    register(api)
    low = submit(api, priority=10)
    high_old = submit(api, priority=200)
    high_new = submit(api, priority=200)
    normal = submit(api, priority=100)
    claimed = claim(api, max_tasks=3)
    assert [t["task_id"] for t in claimed] == [high_old, high_new, normal]
    assert all(t["lease_token"] for t in claimed)
    assert [t["task_id"] for t in claim(api)] == [low]


def test_claim_only_takes_the_workers_task_types_and_ready_tasks(api: TestClient) -> None:
    register(api, task_types=("echo",))
    submit(api, "noop")
    later = submit(api, "echo", schedule_at="2099-01-01T00:00:00Z")
    assert claim(api) == []
    echo = submit(api, "echo", payload=base64.b64encode(b"hi").decode())
    claimed = claim(api)
    assert [t["task_id"] for t in claimed] == [echo]
    assert base64.b64decode(claimed[0]["payload"]) == b"hi"
    assert later not in [t["task_id"] for t in claimed]


def test_claimed_task_is_in_progress_with_worker_id(api: TestClient) -> None:
    register(api)
    task_id = submit(api)
    claim(api)
    task = api.get(f"/api/v1/tasks/{task_id}").json()
    assert (task["status"], task["worker_id"]) == ("in_progress", "worker-test-1-aaaaaa")


def test_long_poll_claim_wakes_as_soon_as_a_task_is_submitted(api: TestClient) -> None:
    register(api)
    result: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: result.append(claim(api, wait=10)))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    task_id = submit(api)
    waiter.join(10)
    elapsed = time.monotonic() - started
    assert [t["task_id"] for t in result[0]] == [task_id]
    assert elapsed < 5, f"long-poll took {elapsed:.1f}s to notice the task"


def test_long_poll_returns_empty_after_its_wait(api: TestClient) -> None:
    register(api)
    started = time.monotonic()
    assert claim(api, wait=0.5) == []
    assert time.monotonic() - started >= 0.5


def test_claim_by_unknown_worker_is_404(api: TestClient) -> None:
    response = api.post("/api/v1/tasks/claim", json={"worker_id": "nobody"})
    assert response.status_code == 404


def test_complete_stores_result_and_a_second_complete_is_409(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api)
    task_id = submit(api)
    task = claim(api)[0]
    body = {
        "worker_id": "worker-test-1-aaaaaa",
        "tasks": [{**lease(task), "result": base64.b64encode(b"done").decode()}],
    }
    first = api.post("/api/v1/tasks/complete", json=body)
    assert first.status_code == 200
    assert first.json() == {"accepted": [task_id], "rejected": []}
    detail = api.get(f"/api/v1/tasks/{task_id}").json()
    assert (detail["status"], base64.b64decode(detail["result"])) == ("completed", b"done")
    again = api.post(
        "/api/v1/tasks/complete", json={**body, "tasks": [{**lease(task), "result": ""}]}
    )
    assert again.status_code == 409
    row = db.execute("SELECT result FROM tq_tasks WHERE task_id = %s", (task_id,)).fetchone()
    assert row is not None
    assert bytes(row["result"]) == b"done"


def test_stale_lease_token_cannot_complete_fail_or_renew(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api)
    task_id = submit(api)
    task = claim(api)[0]
    stale = {"task_id": task_id, "lease_token": str(uuid.uuid4())}
    for path, item in (
        ("complete", {**stale, "result": ""}),
        ("fail", {**stale, "error": "boom"}),
        ("release", stale),
    ):
        response = api.post(
            f"/api/v1/tasks/{path}", json={"worker_id": "worker-test-1-aaaaaa", "tasks": [item]}
        )
        assert response.status_code == 409, path
    before = db.execute(
        "SELECT lease_expires_at FROM tq_tasks WHERE task_id = %s", (task_id,)
    ).fetchone()
    beat = api.post("/api/v1/workers/worker-test-1-aaaaaa/heartbeat", json={"leases": [stale]})
    assert beat.json() == {"renewed": [], "abandon": [task_id], "abort": []}
    after = db.execute(
        "SELECT status, lease_expires_at, retry_count FROM tq_tasks WHERE task_id = %s", (task_id,)
    ).fetchone()
    assert after is not None
    assert before is not None
    assert (after["status"], after["retry_count"]) == ("in_progress", 0)
    assert after["lease_expires_at"] == before["lease_expires_at"]
    assert api.get(f"/api/v1/tasks/{task_id}").json()["status"] == "in_progress"
    assert task["lease_token"] != stale["lease_token"]


def test_batch_with_some_stale_leases_applies_only_the_current_ones(api: TestClient) -> None:
    register(api)
    submit(api)
    submit(api)
    tasks = claim(api)
    items = [
        {**lease(tasks[0]), "result": ""},
        {"task_id": tasks[1]["task_id"], "lease_token": str(uuid.uuid4()), "result": ""},
    ]
    response = api.post(
        "/api/v1/tasks/complete", json={"worker_id": "worker-test-1-aaaaaa", "tasks": items}
    )
    assert response.json() == {"accepted": [tasks[0]["task_id"]], "rejected": [tasks[1]["task_id"]]}
    assert api.get(f"/api/v1/tasks/{tasks[1]['task_id']}").json()["status"] == "in_progress"


def test_heartbeat_renews_current_leases(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api)
    task_id = submit(api)
    task = claim(api)[0]
    db.execute(
        "UPDATE tq_tasks SET lease_expires_at = now() + interval '1 second' WHERE task_id = %s",
        (task_id,),
    )
    beat = api.post(
        "/api/v1/workers/worker-test-1-aaaaaa/heartbeat",
        json={
            "cpu_usage_percent": 45.2,
            "memory_usage_mb": 256,
            "current_tasks": 1,
            "leases": [lease(task)],
        },
    )
    assert beat.json() == {"renewed": [task_id], "abandon": [], "abort": []}
    row = db.execute(
        "SELECT lease_expires_at - now() > interval '20 seconds' AS renewed "
        "FROM tq_tasks WHERE task_id = %s",
        (task_id,),
    ).fetchone()
    assert row == {"renewed": True}
    worker = api.get("/api/v1/workers").json()[0]
    assert (worker["cpu_usage_percent"], worker["memory_usage_mb"], worker["current_tasks"]) == (
        45.2,
        256,
        1,
    )


def test_heartbeat_of_unknown_worker_is_404(api: TestClient) -> None:
    response = api.post("/api/v1/workers/worker-nobody/heartbeat", json={})
    assert response.status_code == 404


def test_fail_retries_until_max_retries_then_dead_letters_with_last_error(
    api: TestClient,
) -> None:
    register(api)
    task_id = submit(api, max_retries=2)
    for attempt in range(3):
        task = claim(api)[0]
        assert task["retry_count"] == attempt
        response = api.post(
            "/api/v1/tasks/fail",
            json={
                "worker_id": "worker-test-1-aaaaaa",
                "tasks": [{**lease(task), "error": f"boom {attempt}"}],
            },
        )
        assert response.status_code == 200
        expected = "failed" if attempt < 2 else "dead_letter"
        assert api.get(f"/api/v1/tasks/{task_id}").json()["status"] == expected
    detail = api.get(f"/api/v1/tasks/{task_id}").json()
    assert (detail["retry_count"], detail["error"]) == (2, "boom 2")
    assert claim(api) == []


def test_non_retryable_failure_dead_letters_at_once(api: TestClient) -> None:
    register(api)
    task_id = submit(api, max_retries=5)
    task = claim(api)[0]
    api.post(
        "/api/v1/tasks/fail",
        json={
            "worker_id": "worker-test-1-aaaaaa",
            "tasks": [{**lease(task), "error": "bad input", "retryable": False}],
        },
    )
    assert api.get(f"/api/v1/tasks/{task_id}").json()["status"] == "dead_letter"


def test_failed_task_waits_for_its_backoff(
    database_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    from tq_broker.app import create_app

    settings = BrokerSettings(
        database_url=database_url, auth="off", backoff_base_seconds=60, backoff_cap_seconds=100
    )
    with TestClient(create_app(settings), base_url=LOOPBACK) as api:
        register(api)
        task_id = submit(api)
        task = claim(api)[0]
        api.post(
            "/api/v1/tasks/fail",
            json={"worker_id": "worker-test-1-aaaaaa", "tasks": [{**lease(task), "error": "x"}]},
        )
        assert claim(api) == []
        row = db.execute(
            "SELECT extract(epoch FROM run_at - now()) AS wait FROM tq_tasks WHERE task_id = %s",
            (task_id,),
        ).fetchone()
        assert row is not None
        assert 25 <= row["wait"] <= 60  # base 60 with equal jitter: between 30 and 60 s


def test_release_returns_tasks_to_pending_without_counting_an_attempt(api: TestClient) -> None:
    register(api)
    task_id = submit(api)
    task = claim(api)[0]
    response = api.post(
        "/api/v1/tasks/release", json={"worker_id": "worker-test-1-aaaaaa", "tasks": [lease(task)]}
    )
    assert response.json() == {"accepted": [task_id], "rejected": []}
    detail = api.get(f"/api/v1/tasks/{task_id}").json()
    assert (detail["status"], detail["retry_count"], detail["worker_id"]) == ("pending", 0, None)
    assert [t["task_id"] for t in claim(api)] == [task_id]


def test_cancelled_task_is_never_claimed(api: TestClient) -> None:
    register(api)
    task_id = submit(api)
    assert api.delete(f"/api/v1/tasks/{task_id}").status_code == 204
    assert claim(api) == []


def test_requeue_gives_a_dead_letter_fresh_attempts(api: TestClient) -> None:
    register(api)
    task_id = submit(api, max_retries=0)
    task = claim(api)[0]
    api.post(
        "/api/v1/tasks/fail",
        json={"worker_id": "worker-test-1-aaaaaa", "tasks": [{**lease(task), "error": "x"}]},
    )
    response = api.post(f"/api/v1/tasks/{task_id}/requeue")
    assert response.status_code == 200
    assert response.json() == {"task_id": task_id, "status": "pending"}
    assert [t["task_id"] for t in claim(api)] == [task_id]
    assert api.post(f"/api/v1/tasks/{task_id}/requeue").status_code == 409
    assert api.post(f"/api/v1/tasks/{uuid.uuid4()}/requeue").status_code == 404


def test_deregister_marks_offline_and_expires_what_it_held(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api)
    task_id = submit(api)
    claim(api)
    assert api.delete("/api/v1/workers/worker-test-1-aaaaaa").status_code == 204
    assert api.get("/api/v1/workers").json() == []
    # Its lease is due at once, so the leader's rescuer (every second here) takes the task back
    # as a failed attempt; asserting the due lease itself would race that sweep.
    deadline = time.monotonic() + 10
    while (row := _rescue_state(db, task_id))["status"] == "in_progress":
        assert row["due"], "the deregistered worker's lease was not expired"
        assert time.monotonic() < deadline, "the deregistered worker's task was never rescued"
        time.sleep(0.05)
    assert row == {"status": "failed", "due": None, "retry_count": 1, "worker_gone": True}
    claim_after = api.post("/api/v1/tasks/claim", json={"worker_id": "worker-test-1-aaaaaa"})
    assert claim_after.status_code == 409
    assert api.delete("/api/v1/workers/worker-nobody").status_code == 404


def _rescue_state(db: psycopg.Connection[dict[str, Any]], task_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT status, lease_expires_at <= now() AS due, retry_count,"
        " coalesce(error LIKE 'lease expired: worker worker-test-1-aaaaaa %%', false)"
        " AS worker_gone"
        " FROM tq_tasks WHERE task_id = %s",
        (task_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def test_get_on_post_only_task_actions_is_405(api: TestClient) -> None:
    for action in ("batch", "claim", "complete", "fail", "release"):
        response = api.get(f"/api/v1/tasks/{action}")
        assert response.status_code == 405, action
        assert response.headers["allow"] == "POST"


def claim_in_background(
    api: TestClient, worker_id: str = "worker-test-1-aaaaaa", wait: float = 15
) -> tuple[threading.Thread, list[list[dict[str, Any]]], float]:
    answers: list[list[dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: answers.append(claim(api, worker_id, wait=wait)))
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)  # the claim's first statement found nothing: it waits now
    return thread, answers, started


def test_drain_ends_the_waiting_claim_and_the_worker_claims_nothing_after(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api)
    thread, answers, started = claim_in_background(api)
    assert api.post("/api/v1/workers/worker-test-1-aaaaaa/drain").status_code == 204
    thread.join(10)
    assert answers == [[]]
    assert time.monotonic() - started < 5, "the waiting claim outlived the drain"
    task_id = submit(api)
    assert claim(api) == [], "a draining worker was handed a task"
    row = db.execute("SELECT status FROM tq_tasks WHERE task_id = %s", (task_id,)).fetchone()
    assert row == {"status": "pending"}
    # Draining, it still heartbeats and deregisters as usual; unknown workers are 404.
    beat = api.post("/api/v1/workers/worker-test-1-aaaaaa/heartbeat", json={})
    assert beat.status_code == 200
    assert api.post("/api/v1/workers/worker-nobody/drain").status_code == 404
    assert api.delete("/api/v1/workers/worker-test-1-aaaaaa").status_code == 204
    assert api.post("/api/v1/workers/worker-test-1-aaaaaa/drain").status_code == 409


def test_deregister_ends_the_waiting_claim_with_409(api: TestClient) -> None:
    register(api)
    codes: list[int] = []
    body = {"worker_id": "worker-test-1-aaaaaa", "wait_seconds": 15}
    thread = threading.Thread(
        target=lambda: codes.append(api.post("/api/v1/tasks/claim", json=body).status_code)
    )
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    assert api.delete("/api/v1/workers/worker-test-1-aaaaaa").status_code == 204
    thread.join(10)
    assert codes == [409], "a claim of a worker gone while it waited: offline, register again"
    assert time.monotonic() - started < 5


def test_a_newer_claim_of_the_same_worker_ends_the_waiting_one(api: TestClient) -> None:
    register(api)
    first, first_answers, started = claim_in_background(api)
    second, second_answers, _ = claim_in_background(api, wait=1)
    first.join(10)
    assert first_answers == [[]]
    assert time.monotonic() - started < 5, "two claims of one worker waited side by side"
    second.join(10)
    assert second_answers == [[]]


def test_a_task_of_another_type_does_not_end_a_waiting_claim(api: TestClient) -> None:
    register(api, task_types=("echo",))
    thread, answers, started = claim_in_background(api, wait=1.5)
    submit(api, "noop")
    thread.join(10)
    assert answers == [[]]
    assert time.monotonic() - started >= 1.5


def test_a_retry_whose_backoff_ends_wakes_a_waiting_claim(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    """No notification is sent when a backoff ends: the replica's ready check finds it."""
    register(api)
    task_id = submit(api)
    db.execute(
        "UPDATE tq_tasks SET status = 'failed', retry_count = 1, run_at = now() + interval '1s' "
        "WHERE task_id = %s",
        (task_id,),
    )
    thread, answers, started = claim_in_background(api, wait=10)
    thread.join(15)
    assert [t["task_id"] for t in answers[0]] == [task_id]
    assert time.monotonic() - started < 3


def test_a_heartbeat_renews_no_more_leases_than_concurrency_plus_prefetch(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    response = api.post(
        "/api/v1/workers",
        json={"worker_id": "w-small", "task_types": ["noop"], "concurrency": 1, "prefetch": 1},
    )
    assert response.status_code == 201
    leases = [{"task_id": str(uuid.uuid4()), "lease_token": str(uuid.uuid4())} for _ in range(3)]
    before = db.execute("SELECT last_heartbeat FROM tq_workers").fetchone()
    beat = api.post(
        "/api/v1/workers/w-small/heartbeat", json={"leases": leases, "current_tasks": 3}
    )
    assert beat.status_code == 400
    assert "at most 2 leases" in beat.json()["error"]
    after = db.execute("SELECT last_heartbeat, current_tasks FROM tq_workers").fetchone()
    assert after is not None and before is not None
    assert (after["last_heartbeat"], after["current_tasks"]) == (before["last_heartbeat"], 0)
    ok = api.post("/api/v1/workers/w-small/heartbeat", json={"leases": leases[:2]})
    assert ok.status_code == 200


def test_a_heartbeat_never_renews_another_workers_lease(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    register(api, "worker-a")
    register(api, "worker-b")
    submit(api)
    (task,) = claim(api, "worker-a")
    db.execute(
        "UPDATE tq_tasks SET lease_expires_at = now() + interval '5 seconds' WHERE task_id = %s",
        (task["task_id"],),
    )
    beat = api.post("/api/v1/workers/worker-b/heartbeat", json={"leases": [lease(task)]})
    assert beat.json() == {"renewed": [], "abandon": [task["task_id"]], "abort": []}
    row = db.execute(
        "SELECT lease_expires_at < now() + interval '10 seconds' AS unchanged FROM tq_tasks"
    ).fetchone()
    assert row == {"unchanged": True}
