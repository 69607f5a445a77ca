"""What the dashboard stands on, on real PostgreSQL: its pages and the API docs are served from
the packages (nothing from another origin), the overview counts a known queue, a key can ask
what it may do, a task's payload can be read, and dead letters are requeued in bulk by one
request — with bad input refused and nothing written."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.app import create_app
from tq_broker.settings import BrokerSettings

from ..conftest import LOOPBACK

ADMIN = "dashboard-admin-secret-for-tests-0123456789"
WORKER = "worker-dashboard-1-abcdef"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def secured(database_url: str) -> Iterator[TestClient]:
    settings = BrokerSettings(database_url=database_url, auth="on", admin_api_key=ADMIN)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers.update(bearer(ADMIN))
        yield client


def key_with(api: TestClient, *permissions: str) -> str:
    response = api.post("/api/v1/keys", json={"name": "k", "permissions": list(permissions)})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def dead_letters(api: TestClient, task_type: str, count: int) -> list[str]:
    """`count` tasks of `task_type` that failed their only attempt."""
    batch = {"tasks": [{"task_type": task_type, "max_retries": 0} for _ in range(count)]}
    ids = [t["task_id"] for t in api.post("/api/v1/tasks/batch", json=batch).json()["tasks"]]
    worker = f"{WORKER}-{task_type}"
    registered = {"worker_id": worker, "task_types": [task_type], "concurrency": count}
    assert api.post("/api/v1/workers", json=registered).status_code == 201
    claim = {"worker_id": worker, "max_tasks": count}
    claimed = api.post("/api/v1/tasks/claim", json=claim).json()["tasks"]
    failures = [
        {"task_id": t["task_id"], "lease_token": t["lease_token"], "error": "boom\ntraceback"}
        for t in claimed
    ]
    assert api.post("/api/v1/tasks/fail", json={"worker_id": worker, "tasks": failures}).is_success
    assert api.delete(f"/api/v1/workers/{worker}").status_code == 204
    return ids


def statuses(db: psycopg.Connection[dict[str, Any]]) -> dict[str, str]:
    rows = db.execute("SELECT task_id::text AS id, status FROM tq_tasks").fetchall()
    return {row["id"]: row["status"] for row in rows}


# --- pages and docs ------------------------------------------------------------------------


def test_root_redirects_to_the_dashboard_whose_files_all_come_from_the_broker(
    api: TestClient,
) -> None:
    root = api.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    assert api.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    page = api.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assets = [r for r in referenced if r.startswith("/ui/static/")]
    assert len(assets) == 2, referenced  # the script and the stylesheet
    for ref in referenced:
        assert ref.startswith(("/", "#", "data:")), f"{ref} is not served by the broker"
    for asset in assets:
        served = api.get(asset)
        assert served.status_code == 200, asset
        # (the SVG namespace is a name, not a place anything is loaded from)
        foreign = re.search(r"https?://(?!www\.w3\.org/2000/svg\b)", served.text)
        assert not foreign, f"{asset} refers to another origin"


def test_swagger_ui_and_redoc_load_their_scripts_from_the_broker(api: TestClient) -> None:
    for page, scripts in (
        ("/docs", ["/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"]),
        ("/redoc", ["/docs/assets/redoc.standalone.js"]),
    ):
        html = api.get(page)
        assert html.status_code == 200
        # The browser is told so too: nothing from another origin even if a script asks.
        assert "default-src 'self'" in html.headers["content-security-policy"]
        external = [u for u in re.findall(r'(?:src|href)="([^"]+)"', html.text) if "//" in u]
        assert not external, f"{page} loads {external}"
        for script in scripts:
            assert script in html.text
            served = api.get(script)
            assert served.status_code == 200 and len(served.content) > 50_000, script
    assert api.get("/openapi.json").status_code == 200


# --- overview and me -----------------------------------------------------------------------


def test_the_overview_counts_a_known_queue(api: TestClient) -> None:
    later = "2999-01-01T00:00:00Z"
    submits = [
        {"task_type": "served", "priority": 250},
        {"task_type": "served"},
        {"task_type": "unserved", "priority": 10},
        {"task_type": "unserved", "schedule_at": later},
    ]
    assert api.post("/api/v1/tasks/batch", json={"tasks": submits}).status_code == 201
    dead_letters(api, "broken", 2)
    registered = {"worker_id": WORKER, "task_types": ["served"], "concurrency": 1}
    assert api.post("/api/v1/workers", json=registered).status_code == 201
    claimed = api.post("/api/v1/tasks/claim", json={"worker_id": WORKER, "max_tasks": 1}).json()

    view = api.get("/api/v1/overview").json()
    assert claimed["tasks"][0]["priority"] == 250
    assert (view["pending"], view["ready"], view["scheduled"]) == (3, 2, 1)
    assert (view["in_progress"], view["dead_letter"]) == (1, 2)
    assert view["by_priority"] == {"high": 0, "normal": 2, "low": 1}
    assert view["workers_online"] == 1 and view["is_leader"] in (True, False)
    by_type = {t["task_type"]: t for t in view["task_types"]}
    assert by_type["served"]["ready"] == 1 and by_type["served"]["in_progress"] == 1
    assert by_type["served"]["served"] and not by_type["unserved"]["served"]
    assert by_type["broken"]["dead_letter"] == 2
    assert view["unserved_task_types"] == ["unserved"]  # "broken" has nothing ready
    failed_last_hour = sum(minute["failed"] for minute in view["throughput"])
    assert failed_last_hour == 2


def test_a_key_learns_what_it_may_do_and_auth_off_may_do_everything(
    api: TestClient, secured: TestClient
) -> None:
    assert api.get("/api/v1/me").json() == {
        "auth": False,
        "name": None,
        "permissions": [
            "submit_tasks",
            "read_tasks",
            "cancel_tasks",
            "process_tasks",
            "manage_schedules",
            "admin",
        ],
    }
    reader = key_with(secured, "read_tasks", "cancel_tasks")
    me = secured.get("/api/v1/me", headers=bearer(reader)).json()
    assert me == {"auth": True, "name": "k", "permissions": ["cancel_tasks", "read_tasks"]}
    assert "admin" in secured.get("/api/v1/me").json()["permissions"]
    anonymous = secured.get("/api/v1/me", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and "error" in anonymous.json()


def test_a_tasks_payload_is_readable_and_unknown_ids_are_refused(api: TestClient) -> None:
    raw = bytes(range(256))
    encoded = base64.b64encode(raw).decode()
    task_id = api.post("/api/v1/tasks", json={"task_type": "bin", "payload": encoded}).json()[
        "task_id"
    ]
    answer = api.get(f"/api/v1/tasks/{task_id}/payload").json()
    assert answer == {"task_id": task_id, "payload": encoded}
    missing = api.get("/api/v1/tasks/00000000-0000-0000-0000-000000000000/payload")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    assert api.get("/api/v1/tasks/not-a-uuid/payload").status_code == 400


# --- bulk requeue --------------------------------------------------------------------------


def test_bulk_requeue_moves_the_filtered_dead_letters_back_in_one_request(
    api: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    mails = dead_letters(api, "mail", 3)
    sms = dead_letters(api, "sms", 2)
    waiting = api.post("/api/v1/tasks", json={"task_type": "mail"}).json()["task_id"]

    first = api.post("/api/v1/tasks/requeue", json={"task_type": "mail", "limit": 2}).json()
    assert len(first["requeued"]) == 2 and first["remaining"] is True
    rest = api.post("/api/v1/tasks/requeue", json={"task_type": "mail"}).json()
    assert len(rest["requeued"]) == 1 and rest["remaining"] is False
    assert sorted(first["requeued"] + rest["requeued"]) == sorted(mails)
    now = statuses(db)
    assert all(now[i] == "pending" for i in mails) and now[waiting] == "pending"
    assert all(now[i] == "dead_letter" for i in sms)
    retries = db.execute(
        "SELECT max(retry_count) AS r FROM tq_tasks WHERE task_id = ANY(%s::uuid[])", [mails]
    ).fetchone()
    assert retries == {"r": 0}

    # By ids: only dead letters move; an id that is not one is left alone.
    chosen = api.post("/api/v1/tasks/requeue", json={"task_ids": [sms[0], waiting]}).json()
    assert chosen == {"requeued": [sms[0]], "remaining": False}
    assert statuses(db)[sms[1]] == "dead_letter"
    everything = api.post("/api/v1/tasks/requeue", json={}).json()
    assert everything == {"requeued": [sms[1]], "remaining": False}
    assert api.post("/api/v1/tasks/requeue", json={}).json() == {"requeued": [], "remaining": False}


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("unknown field", {"status": "dead_letter"}),
        ("limit zero", {"limit": 0}),
        ("limit over 1000", {"limit": 1001}),
        ("limit a string", {"limit": "5"}),
        ("no ids", {"task_ids": []}),
        ("not a uuid", {"task_ids": ["nope"]}),
        ("too many ids", {"task_ids": [f"00000000-0000-0000-0000-{n:012d}" for n in range(1001)]}),
        ("bad task type", {"task_type": "has space"}),
        ("task type not a string", {"task_type": 5}),
        ("a list", ["x"]),
    ],
)
def test_bulk_requeue_refuses_bad_input_and_writes_nothing(
    api: TestClient, db: psycopg.Connection[dict[str, Any]], case: str, body: Any
) -> None:
    ids = dead_letters(api, "bad", 1)
    response = api.post("/api/v1/tasks/requeue", json=body)
    assert response.status_code == 400, (case, response.text)
    assert response.json()["error"]
    assert statuses(db)[ids[0]] == "dead_letter"


def test_bulk_requeue_needs_admin_and_other_methods_are_405(
    secured: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    ids = dead_letters(secured, "guarded", 2)
    for permissions in (["read_tasks"], ["read_tasks", "cancel_tasks", "submit_tasks"]):
        key = key_with(secured, *permissions)
        refused = secured.post("/api/v1/tasks/requeue", json={}, headers=bearer(key))
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert all(statuses(db)[i] == "dead_letter" for i in ids)
    assert secured.post("/api/v1/tasks/requeue", json={}, headers={}).status_code == 200
    assert secured.get("/api/v1/tasks/requeue").status_code == 405
    not_json = secured.post(
        "/api/v1/tasks/requeue", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code in (400, 415)


def test_with_auth_off_the_dashboard_refuses_foreign_hosts(database_url: str) -> None:
    settings = BrokerSettings(database_url=database_url, auth="off")
    with TestClient(create_app(settings), base_url="http://evil.example") as client:
        assert client.get("/api/v1/overview").status_code == 403
    with TestClient(create_app(settings), base_url=LOOPBACK) as client:
        assert client.get("/ui/").status_code == 200
