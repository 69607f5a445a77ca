"""The tasks endpoints against real PostgreSQL: success paths and their error paths."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient

EMAIL = base64.b64encode(b"user@example.com").decode()


def submit(api: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"task_type": "send_email", "payload": EMAIL, **fields}
    response = api.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_submit_returns_201_with_id_and_pending_and_stores_every_field(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    created = submit(
        api,
        priority=150,
        timeout_seconds=60,
        max_retries=5,
        schedule_at="2030-01-01T12:00:00+02:00",
    )
    assert created["status"] == "pending"
    row = db.execute("SELECT * FROM tq_tasks WHERE task_id = %s", (created["task_id"],)).fetchone()
    assert row is not None
    assert bytes(row["payload"]) == b"user@example.com"
    assert (row["priority"], row["timeout_seconds"], row["max_retries"]) == (150, 60, 5)
    assert row["run_at"].isoformat() == "2030-01-01T10:00:00+00:00"


def test_submit_applies_the_contract_defaults(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    created = api.post("/api/v1/tasks", json={"task_type": "noop"}).json()
    row = db.execute("SELECT * FROM tq_tasks WHERE task_id = %s", (created["task_id"],)).fetchone()
    assert row is not None
    assert (row["priority"], row["timeout_seconds"], row["max_retries"]) == (100, 300, 3)
    assert bytes(row["payload"]) == b""


def test_get_returns_every_contract_field(api: TestClient) -> None:
    created = submit(api, priority=150)
    response = api.get(f"/api/v1/tasks/{created['task_id']}")
    assert response.status_code == 200
    task = response.json()
    # The contract's fields, and ours beyond them: the limits and when the task is due.
    assert (task.pop("max_retries"), task.pop("timeout_seconds")) == (3, 300)
    assert task.pop("run_at").endswith("Z")
    assert set(task) == {
        "task_id",
        "task_type",
        "status",
        "priority",
        "created_at",
        "updated_at",
        "result",
        "error",
        "retry_count",
        "worker_id",
        "progress",  # task control (docs/task-control.md)
        "aborted_at",
        "aborted_by",
    }
    assert task["task_id"] == created["task_id"]
    assert (task["task_type"], task["status"], task["priority"]) == ("send_email", "pending", 150)
    assert (task["result"], task["error"], task["retry_count"], task["worker_id"]) == (
        None,
        None,
        0,
        None,
    )
    assert task["created_at"].endswith("Z")


def test_get_unknown_task_is_404_and_malformed_id_is_400(api: TestClient) -> None:
    missing = api.get(f"/api/v1/tasks/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "not found" in missing.json()["error"]
    malformed = api.get("/api/v1/tasks/not-a-uuid")
    assert malformed.status_code == 400
    assert malformed.json()["error"].startswith("task_id")


def test_list_is_newest_first_and_filters_by_status_and_type(api: TestClient) -> None:
    first = submit(api)
    second = submit(api, task_type="resize_image")
    third = submit(api)
    assert api.delete(f"/api/v1/tasks/{third['task_id']}").status_code == 204

    everything = api.get("/api/v1/tasks").json()
    assert [t["task_id"] for t in everything] == [
        third["task_id"],
        second["task_id"],
        first["task_id"],
    ]
    assert set(everything[0]) == {
        "task_id",
        "task_type",
        "status",
        "priority",
        "created_at",
        "updated_at",
    }
    pending = api.get("/api/v1/tasks", params={"status": "pending"}).json()
    assert [t["task_id"] for t in pending] == [second["task_id"], first["task_id"]]
    emails = api.get("/api/v1/tasks", params={"task_type": "send_email"}).json()
    assert [t["task_id"] for t in emails] == [third["task_id"], first["task_id"]]
    cancelled = api.get("/api/v1/tasks", params={"status": "cancelled"}).json()
    assert [t["task_id"] for t in cancelled] == [third["task_id"]]


def test_list_pages_with_limit_and_offset(api: TestClient) -> None:
    ids = [submit(api)["task_id"] for _ in range(5)]
    page = api.get("/api/v1/tasks", params={"limit": 2, "offset": 1}).json()
    assert [t["task_id"] for t in page] == [ids[3], ids[2]]


def test_list_rejects_out_of_range_limits_and_unknown_status(api: TestClient) -> None:
    for params in (
        {"limit": 1001},
        {"limit": 0},
        {"offset": -1},
        {"status": "exploded"},
        {"limit": "ten"},
        {"task_type": "bad type!"},
    ):
        response = api.get("/api/v1/tasks", params=params)
        assert response.status_code == 400, params
        assert next(iter(params)) in response.json()["error"]
    assert len(api.get("/api/v1/tasks", params={"limit": 1000}).json()) == 0


def test_cancel_pending_is_204_and_second_cancel_is_409(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    created = submit(api)
    assert api.delete(f"/api/v1/tasks/{created['task_id']}").status_code == 204
    assert api.get(f"/api/v1/tasks/{created['task_id']}").json()["status"] == "cancelled"
    again = api.delete(f"/api/v1/tasks/{created['task_id']}")
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]


def test_cancel_in_progress_or_completed_is_409_and_changes_nothing(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    for status in ("in_progress", "completed", "dead_letter"):
        created = submit(api)
        db.execute(
            "UPDATE tq_tasks SET status = %s WHERE task_id = %s", (status, created["task_id"])
        )
        response = api.delete(f"/api/v1/tasks/{created['task_id']}")
        assert response.status_code == 409
        assert api.get(f"/api/v1/tasks/{created['task_id']}").json()["status"] == status


def test_cancel_failed_task_waiting_for_retry_is_204(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    created = submit(api)
    db.execute("UPDATE tq_tasks SET status = 'failed' WHERE task_id = %s", (created["task_id"],))
    assert api.delete(f"/api/v1/tasks/{created['task_id']}").status_code == 204


def test_cancel_unknown_is_404_and_malformed_is_400(api: TestClient) -> None:
    assert api.delete(f"/api/v1/tasks/{uuid.uuid4()}").status_code == 404
    assert api.delete("/api/v1/tasks/1234").status_code == 400


def test_idempotency_key_same_body_returns_first_task_with_200(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    body = {"task_type": "send_email", "payload": EMAIL, "priority": 120}
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/api/v1/tasks", json=body, headers=headers)
    second = api.post("/api/v1/tasks", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    assert db.execute("SELECT count(*) AS n FROM tq_tasks").fetchone() == {"n": 1}


def test_idempotency_key_with_different_body_is_409(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    headers = {"Idempotency-Key": "order-43"}
    assert api.post("/api/v1/tasks", json={"task_type": "a"}, headers=headers).status_code == 201
    clash = api.post("/api/v1/tasks", json={"task_type": "b"}, headers=headers)
    assert clash.status_code == 409
    assert "Idempotency-Key" in clash.json()["error"]
    assert db.execute("SELECT count(*) AS n FROM tq_tasks").fetchone() == {"n": 1}


def test_idempotency_key_must_be_printable_ascii(api: TestClient) -> None:
    response = api.post(
        "/api/v1/tasks", json={"task_type": "a"}, headers={"Idempotency-Key": "x" * 256}
    )
    assert response.status_code == 400


def test_batch_stores_all_tasks_in_order(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    tasks = [
        {
            "task_type": "noop",
            "priority": i % 256,
            "payload": base64.b64encode(str(i).encode()).decode(),
        }
        for i in range(1000)
    ]
    response = api.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 201, response.text
    returned = response.json()["tasks"]
    assert len(returned) == 1000
    assert all(t["status"] == "pending" for t in returned)
    rows = db.execute("SELECT task_id, priority, payload FROM tq_tasks").fetchall()
    by_id = {str(r["task_id"]): r for r in rows}
    for i, task in enumerate(returned):
        assert by_id[task["task_id"]]["priority"] == i % 256
        assert bytes(by_id[task["task_id"]]["payload"]) == str(i).encode()


def test_batch_with_one_bad_task_stores_nothing(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    tasks = [{"task_type": "noop"}] * 10 + [{"task_type": "noop", "priority": 999}]
    response = api.post("/api/v1/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 400
    assert "tasks.10.priority" in response.json()["error"]
    assert db.execute("SELECT count(*) AS n FROM tq_tasks").fetchone() == {"n": 0}


def test_batch_rejects_empty_and_oversized_batches(api: TestClient) -> None:
    assert api.post("/api/v1/tasks/batch", json={"tasks": []}).status_code == 400
    too_many = api.post("/api/v1/tasks/batch", json={"tasks": [{"task_type": "a"}] * 1001})
    assert too_many.status_code == 400


def test_sql_looking_strings_and_binary_payloads_round_trip_byte_for_byte(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    payload = b"'; DROP TABLE tq_tasks; --\x00\xff\xfe" + bytes(range(256))
    task_type = "DROP.TABLE--tq_tasks;"[:-1]
    key = "';DROP-TABLE-tq_tasks;--"
    created = api.post(
        "/api/v1/tasks",
        json={"task_type": task_type, "payload": base64.b64encode(payload).decode()},
        headers={"Idempotency-Key": key},
    ).json()
    row = db.execute("SELECT * FROM tq_tasks WHERE task_id = %s", (created["task_id"],)).fetchone()
    assert row is not None
    assert bytes(row["payload"]) == payload
    assert (row["task_type"], row["idempotency_key"]) == (task_type, key)
    listed = api.get("/api/v1/tasks", params={"task_type": task_type}).json()
    assert [t["task_id"] for t in listed] == [created["task_id"]]


def test_a_batch_lists_newest_first_in_reverse_request_order(api: TestClient) -> None:
    tasks = [{"task_type": f"step-{i}"} for i in range(50)]
    created = api.post("/api/v1/tasks/batch", json={"tasks": tasks}).json()["tasks"]
    listed = api.get("/api/v1/tasks", params={"limit": 50}).json()
    assert [t["task_id"] for t in listed] == [t["task_id"] for t in reversed(created)]
