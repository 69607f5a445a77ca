"""Bad input gets a clear 4xx with {"error": ...} and writes nothing — never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient


def body(**fields: Any) -> bytes:
    return json.dumps({"task_type": "send_email", **fields}).encode()


def raw(text: str) -> bytes:
    return text.encode("utf-8")


DEEP = "[" * 100_000 + "]" * 100_000

BAD_SUBMITS: list[tuple[str, bytes, int, str]] = [
    # (case, body, status, a word the error must contain)
    ("malformed JSON", b'{"task_type": ', 400, "JSON"),
    ("empty body", b"", 400, "body"),
    ("array body", b"[]", 400, "body"),
    ("string body", b'"send_email"', 400, "body"),
    ("null body", b"null", 400, "body"),
    ("invalid UTF-8", b'{"task_type": "\xff\xfe"}', 400, ""),
    ("missing task_type", b"{}", 400, "task_type"),
    ("task_type not a string", body(task_type=5), 400, "task_type"),
    ("task_type empty", body(task_type=""), 400, "task_type"),
    ("task_type too long", body(task_type="a" * 129), 400, "task_type"),
    ("task_type with a space", body(task_type="send email"), 400, "task_type"),
    ("task_type with NUL", raw('{"task_type": "a\\u0000b"}'), 400, "task_type"),
    ("task_type lone surrogate", raw('{"task_type": "\\ud800"}'), 400, "task_type"),
    ("priority float", body(priority=1.5), 400, "priority"),
    ("priority integral float", body(priority=100.0), 400, "priority"),
    ("priority boolean", body(priority=True), 400, "priority"),
    ("priority string", body(priority="100"), 400, "priority"),
    ("priority NaN", raw('{"task_type": "a", "priority": NaN}'), 400, "priority"),
    ("priority Infinity", raw('{"task_type": "a", "priority": Infinity}'), 400, "priority"),
    ("priority negative", body(priority=-1), 400, "priority"),
    ("priority 256", body(priority=256), 400, "priority"),
    ("priority huge", body(priority=10**30), 400, "priority"),
    (
        "priority thousands of digits",
        raw('{"task_type": "a", "priority": 1' + "0" * 5000 + "}"),
        400,
        "",
    ),
    ("payload invalid characters", body(payload="not base64!"), 400, "payload"),
    ("payload bad padding", body(payload="QQ="), 400, "payload"),
    ("payload missing padding", body(payload="QQ"), 400, "payload"),
    ("payload non-canonical bits", body(payload="QR=="), 400, "payload"),
    ("payload with newline", body(payload="QQ==\n"), 400, "payload"),
    ("payload url-safe alphabet", body(payload="-_-_"), 400, "payload"),
    ("payload a number", body(payload=123), 400, "payload"),
    ("schedule_at without zone", body(schedule_at="2024-01-01T12:00:00"), 400, "schedule_at"),
    ("schedule_at words", body(schedule_at="tomorrow"), 400, "schedule_at"),
    ("schedule_at a number", body(schedule_at=1700000000), 400, "schedule_at"),
    ("schedule_at month 13", body(schedule_at="2024-13-01T00:00:00Z"), 400, "schedule_at"),
    ("timeout zero", body(timeout_seconds=0), 400, "timeout_seconds"),
    ("timeout over a day", body(timeout_seconds=86401), 400, "timeout_seconds"),
    ("timeout float", body(timeout_seconds=1.5), 400, "timeout_seconds"),
    ("max_retries negative", body(max_retries=-1), 400, "max_retries"),
    ("max_retries over 100", body(max_retries=101), 400, "max_retries"),
    ("unknown field", body(queue="default"), 400, "queue"),
    ("deep nesting", raw('{"task_type": "a", "x": ' + DEEP + "}"), 400, ""),
]


def assert_nothing_written(db: psycopg.Connection[dict[str, Any]]) -> None:
    assert db.execute("SELECT count(*) AS n FROM tq_tasks").fetchone() == {"n": 0}


@pytest.mark.parametrize(
    ("case", "payload", "status", "word"), BAD_SUBMITS, ids=[c[0] for c in BAD_SUBMITS]
)
def test_bad_submit_is_rejected_with_error_body_and_writes_nothing(
    api: TestClient,
    db: psycopg.Connection[dict[str, Any]],
    case: str,
    payload: bytes,
    status: int,
    word: str,
) -> None:
    response = api.post(
        "/api/v1/tasks", content=payload, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str)
    assert error
    assert word in error
    assert_nothing_written(db)


def test_payload_over_one_mebibyte_decoded_is_413(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    at_limit = base64.b64encode(b"x" * (1024 * 1024)).decode()
    over = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    rejected = api.post("/api/v1/tasks", json={"task_type": "a", "payload": over})
    assert rejected.status_code == 413
    assert "limit" in rejected.json()["error"]
    assert_nothing_written(db)
    accepted = api.post("/api/v1/tasks", json={"task_type": "a", "payload": at_limit})
    assert accepted.status_code == 201


def test_body_over_the_cap_is_413_before_parsing(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    huge = b'{"task_type": "a", "payload": "' + b"A" * (3 * 1024 * 1024) + b'"}'
    response = api.post("/api/v1/tasks", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert_nothing_written(db)


def test_streamed_body_without_length_is_capped_too(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    def chunks() -> Any:
        yield b'{"task_type": "a", "payload": "'
        for _ in range(64):
            yield b"A" * 65536
        yield b'"}'

    response = api.post(
        "/api/v1/tasks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert_nothing_written(db)


def test_non_json_content_type_is_415(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    response = api.post(
        "/api/v1/tasks",
        content=body(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert_nothing_written(db)


def test_unknown_path_and_wrong_method_use_the_error_body(api: TestClient) -> None:
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong = api.put("/api/v1/tasks")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def test_openapi_declares_400_not_422(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    submit = spec["paths"]["/api/v1/tasks"]["post"]["responses"]
    assert {"201", "400", "409", "413"} <= set(submit)
    assert all(
        "422" not in op["responses"] for path in spec["paths"].values() for op in path.values()
    )


@pytest.mark.parametrize(
    ("path", "size"),
    [("/api/v1/tasks/release", 300 * 1024), ("/api/v1/tasks/claim", 100 * 1024)],
)
def test_worker_routes_have_body_caps_sized_to_them(api: TestClient, path: str, size: int) -> None:
    body = b'{"worker_id": "' + b"w" * size + b'"}'
    response = api.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


def test_schedule_at_with_any_rfc3339_offset_is_stored_or_refused_never_a_500(
    api: TestClient,
) -> None:
    """PostgreSQL refuses zone offsets past ±15:59, which RFC 3339 allows: the broker stores
    every schedule_at in UTC, single or in a batch (a fuzzer found the batch's 500)."""
    far_offset = "0034-02-20T03:45:56.471869-16:46"
    single = api.post("/api/v1/tasks", json={"task_type": "t", "schedule_at": far_offset})
    batch = api.post(
        "/api/v1/tasks/batch", json={"tasks": [{"task_type": "t", "schedule_at": far_offset}]}
    )
    assert (single.status_code, batch.status_code) == (201, 201), batch.text
    stored = api.get(f"/api/v1/tasks/{single.json()['task_id']}").json()
    assert stored["run_at"] == "0034-02-20T20:31:56.471869Z"
    before_year_one = api.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"task_type": "t", "schedule_at": "0001-01-01T00:00:00+15:00"}]},
    )
    assert before_year_one.status_code == 400
    assert "schedule_at" in before_year_one.json()["error"]
