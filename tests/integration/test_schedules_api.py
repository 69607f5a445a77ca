"""The /api/v1/schedules routes on real PostgreSQL: create, read, edit, delete, and bad input
answered with a 4xx {"error"} that writes nothing."""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

URL = "/api/v1/schedules"
NIGHTLY = {
    "name": "nightly-report",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "task_type": "send_report",
    "payload": "aGk=",
    "priority": 150,
}


def schedule_rows(db: psycopg.Connection[dict[str, Any]]) -> list[dict[str, Any]]:
    return db.execute("SELECT * FROM tq_schedules ORDER BY name").fetchall()


def test_create_get_list_patch_delete(api: TestClient, db: psycopg.Connection[Any]) -> None:
    created = api.post(URL, json=NIGHTLY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "nightly-report"
    assert body["payload"] == "aGk="
    assert (body["interval_seconds"], body["missed_fires"]) == (None, "fire_once")
    assert len(body["next_fire_times"]) == 5
    # 03:00 in Berlin is 01:00 or 02:00 UTC depending on the season
    assert all(t.endswith(("T01:00:00Z", "T02:00:00Z")) for t in body["next_fire_times"])
    assert body["last_task_id"] is None

    got = api.get(f"{URL}/nightly-report").json()
    assert got["next_fire_times"] == body["next_fire_times"]
    assert [s["name"] for s in api.get(URL).json()] == ["nightly-report"]

    paused = api.patch(f"{URL}/nightly-report", json={"paused": True})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert paused.json()["next_fire_times"] == []

    retimed = api.patch(f"{URL}/nightly-report", json={"interval_seconds": 60, "paused": False})
    assert retimed.status_code == 200, retimed.text
    assert (retimed.json()["cron"], retimed.json()["interval_seconds"]) == (None, 60)
    assert len(retimed.json()["next_fire_times"]) == 5
    assert schedule_rows(db)[0]["interval_seconds"] == 60

    assert api.delete(f"{URL}/nightly-report").status_code == 204
    assert api.get(f"{URL}/nightly-report").status_code == 404
    assert schedule_rows(db) == []


def test_a_duplicate_name_is_409_and_changes_nothing(
    api: TestClient, db: psycopg.Connection[Any]
) -> None:
    assert api.post(URL, json=NIGHTLY).status_code == 201
    again = api.post(URL, json={**NIGHTLY, "cron": "*/5 * * * *"})
    assert again.status_code == 409
    assert "exists" in again.json()["error"]
    assert [r["cron"] for r in schedule_rows(db)] == ["0 3 * * *"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "5 fields"),
        ({"cron": "* * * * * *"}, "5 fields"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"interval_seconds": 60}, "exactly one"),
        ({"cron": None}, "exactly one"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds"),
        ({"cron": None, "interval_seconds": -5}, "interval_seconds"),
        ({"cron": None, "interval_seconds": 1.5}, "interval_seconds"),
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"task_type": "bad type!"}, "task_type"),
        ({"payload": "not base64!"}, "payload"),
        ({"priority": 256}, "priority"),
        ({"missed_fires": "fire_all"}, "missed_fires"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_creates_are_400_and_write_nothing(
    api: TestClient, db: psycopg.Connection[Any], change: dict[str, Any], says: str
) -> None:
    body = {k: v for k, v in {**NIGHTLY, **change}.items() if v is not None}
    answer = api.post(URL, json=body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert schedule_rows(db) == []


@pytest.mark.parametrize(
    "change",
    [
        {"cron": "0 25 * * *"},
        {"cron": "0 3 * * *", "interval_seconds": 60},
        {"interval_seconds": 0},
        {"timezone": "Nowhere/City"},
        {"paused": "yes"},
        {"name": "renamed"},
    ],
)
def test_bad_patches_are_400_and_change_nothing(
    api: TestClient, db: psycopg.Connection[Any], change: dict[str, Any]
) -> None:
    assert api.post(URL, json=NIGHTLY).status_code == 201
    before = schedule_rows(db)
    answer = api.patch(f"{URL}/nightly-report", json=change)
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()
    assert schedule_rows(db) == before


def test_unknown_names_are_404(api: TestClient) -> None:
    for method in ("GET", "DELETE"):
        answer = api.request(method, f"{URL}/nope")
        assert answer.status_code == 404
        assert "nope" in answer.json()["error"]
    assert api.patch(f"{URL}/nope", json={"paused": True}).status_code == 404


def test_a_payload_over_the_limit_is_413(api: TestClient, db: psycopg.Connection[Any]) -> None:
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    answer = api.post(URL, json={**NIGHTLY, "payload": big})
    assert answer.status_code == 413, answer.text[:200]
    assert schedule_rows(db) == []
