"""API keys, permissions and rate limits on real PostgreSQL: the permission matrix of every
route by every kind of key, hashed storage, 401/403/429, and the cluster-wide limit."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.app import create_app
from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.ratelimit import HEARTBEAT_BURST_DEFAULT, ClusterRateLimiter
from tq_broker.settings import BrokerSettings
from tq_client.models import PERMISSIONS

from ..support.processes import BrokerProcess

ADMIN = "bootstrap-admin-secret-for-tests"
WORKER_ID = "worker-auth-1-abcdef"


@pytest.fixture
def secured(database_url: str) -> Iterator[TestClient]:
    settings = BrokerSettings(
        database_url=database_url,
        auth="on",
        admin_api_key=ADMIN,
        rate_limit_per_second=1000,
        rate_limit_burst=2000,
        auth_failures_burst=100_000,  # the matrix sends thousands of wrong keys
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create_key(api: TestClient, name: str, permissions: list[str], **limits: Any) -> dict[str, Any]:
    response = api.post(
        "/api/v1/keys",
        headers=bearer(ADMIN),
        json={"name": name, "permissions": permissions, **limits},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


# (method, path, body, permission); {task}/{worker}/{key} are filled per run.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/api/v1/tasks", {"task_type": "noop"}, "submit_tasks"),
    ("POST", "/api/v1/tasks/batch", {"tasks": [{"task_type": "noop"}]}, "submit_tasks"),
    ("GET", "/api/v1/tasks", None, "read_tasks"),
    ("GET", "/api/v1/tasks/{task}", None, "read_tasks"),
    ("GET", "/api/v1/tasks/{task}/attempts", None, "read_tasks"),
    ("DELETE", "/api/v1/tasks/{task}", None, "cancel_tasks"),
    ("POST", "/api/v1/tasks/{task}/abort", None, "cancel_tasks"),
    ("POST", "/api/v1/tasks/{task}/requeue", None, "admin"),
    ("POST", "/api/v1/tasks/requeue", {"task_type": "noop"}, "admin"),
    ("GET", "/api/v1/tasks/{task}/payload", None, "read_tasks"),
    ("GET", "/api/v1/tasks/{task}/attempts", None, "read_tasks"),
    ("GET", "/api/v1/overview", None, "read_tasks"),
    ("GET", "/api/v1/me", None, "any"),  # who am I: every valid key may ask
    ("GET", "/api/v1/stats", None, "read_tasks"),
    ("GET", "/api/v1/workers", None, "read_tasks"),
    ("GET", "/api/v1/queue-depth?task_type=noop", None, "read_tasks"),
    (
        "POST",
        "/api/v1/workers",
        {"worker_id": WORKER_ID, "task_types": ["noop"], "concurrency": 1},
        "process_tasks",
    ),
    ("POST", "/api/v1/workers/{worker}/heartbeat", {}, "process_tasks"),
    ("POST", "/api/v1/workers/{worker}/drain", None, "process_tasks"),
    ("POST", "/api/v1/ws-tickets", None, "read_tasks"),
    ("DELETE", "/api/v1/workers/{worker}", None, "process_tasks"),
    ("POST", "/api/v1/tasks/claim", {"worker_id": WORKER_ID}, "process_tasks"),
    (
        "POST",
        "/api/v1/tasks/complete",
        {
            "worker_id": WORKER_ID,
            "tasks": [{"task_id": "{task}", "lease_token": str(uuid.UUID(int=1))}],
        },
        "process_tasks",
    ),
    (
        "POST",
        "/api/v1/tasks/fail",
        {
            "worker_id": WORKER_ID,
            "tasks": [{"task_id": "{task}", "lease_token": str(uuid.UUID(int=1)), "error": "x"}],
        },
        "process_tasks",
    ),
    (
        "POST",
        "/api/v1/tasks/release",
        {
            "worker_id": WORKER_ID,
            "tasks": [{"task_id": "{task}", "lease_token": str(uuid.UUID(int=1))}],
        },
        "process_tasks",
    ),
    ("POST", "/api/v1/keys", {"name": "k", "permissions": ["read_tasks"]}, "admin"),
    ("GET", "/api/v1/keys", None, "admin"),
    ("DELETE", "/api/v1/keys/{key}", None, "admin"),
    (
        "POST",
        "/api/v1/schedules",
        {"name": "s", "interval_seconds": 60, "task_type": "noop"},
        "manage_schedules",
    ),
    ("GET", "/api/v1/schedules", None, "manage_schedules"),
    ("GET", "/api/v1/schedules/s", None, "manage_schedules"),
    ("PATCH", "/api/v1/schedules/s", {"paused": True}, "manage_schedules"),
    ("DELETE", "/api/v1/schedules/s", None, "manage_schedules"),
]
OPEN_ROUTES = [("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/metrics")]


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, replacement in names.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


def test_the_matrix_covers_every_route_in_the_openapi_document(secured: TestClient) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in secured.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    templated = {
        (
            m,
            p.split("?")[0]
            .replace("{task}", "{task_id}")
            .replace("{worker}", "{worker_id}")
            .replace("{key}", "{key_id}")
            .replace("schedules/s", "schedules/{name}"),
        )
        for m, p, _, _ in ROUTES
    }
    assert documented - set(OPEN_ROUTES) == templated


def test_permission_matrix_of_every_route_and_every_kind_of_key(secured: TestClient) -> None:
    kinds = {
        p: create_key(secured, p, [p])["key"]
        for p in PERMISSIONS
    }
    revoked = create_key(secured, "revoked", ["admin"])
    assert (
        secured.delete(f"/api/v1/keys/{revoked['key_id']}", headers=bearer(ADMIN)).status_code
        == 204
    )
    refused = {
        "none": {},
        "malformed scheme": {"Authorization": f"Basic {kinds['admin']}"},
        "empty bearer": {"Authorization": "Bearer "},
        "oversized": {"Authorization": "Bearer " + "x" * 5000},
        "unknown": bearer("tq_nothing_" + "x" * 43),
        "revoked": bearer(revoked["key"]),
    }
    task_id = secured.post(
        "/api/v1/tasks", json={"task_type": "noop"}, headers=bearer(ADMIN)
    ).json()["task_id"]
    names = {"task": task_id, "worker": WORKER_ID, "key": str(uuid.uuid4())}
    failures = []
    for method, path, body, permission in ROUTES:
        url, payload = fill(path, names), fill(body, names)
        for kind, headers in refused.items():
            status = secured.request(method, url, json=payload, headers=headers).status_code
            if status != 401:
                failures.append(f"{method} {path} with {kind} key: {status}, expected 401")
        for granted, secret in kinds.items():
            response = secured.request(method, url, json=payload, headers=bearer(secret))
            allowed = permission == "any" or granted in (permission, "admin")
            if allowed and response.status_code in (401, 403):
                failures.append(f"{method} {path} with {granted}: {response.status_code}")
            if not allowed and response.status_code != 403:
                failures.append(
                    f"{method} {path} with {granted}: {response.status_code}, expected 403"
                )
            assert response.status_code < 500, (method, path, response.text)
    for method, path in OPEN_ROUTES:
        assert secured.request(method, path).status_code == 200
    assert not failures, "\n".join(failures)


def test_401_names_the_scheme_and_uses_the_error_body(secured: TestClient) -> None:
    response = secured.get("/api/v1/tasks")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["error"]


def test_the_contracts_bearer_example_works_with_the_bootstrap_key(secured: TestClient) -> None:
    response = secured.get("/api/v1/tasks", headers=bearer(ADMIN))
    assert response.status_code == 200
    assert response.json() == []


def test_created_secret_is_shown_once_and_stored_only_as_a_hash(
    secured: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    created = create_key(secured, "ci", ["submit_tasks", "read_tasks"], rate_limit=50, burst=60)
    secret = created["key"]
    assert secret.startswith(created["prefix"] + "_")
    assert len(secret) > 40
    assert secured.get("/api/v1/tasks", headers=bearer(secret)).status_code == 200
    listed = secured.get("/api/v1/keys", headers=bearer(ADMIN)).json()
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert "key" not in listed[0]
    assert (listed[0]["rate_limit"], listed[0]["burst"]) == (50, 60)
    assert secret not in secured.get("/api/v1/keys", headers=bearer(ADMIN)).text
    tables = [
        r["table_name"]
        for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    ]
    for table in tables:
        for row in db.execute(f"SELECT * FROM {table}".encode()):
            for value in row.values():
                text = bytes(value) if isinstance(value, memoryview) else str(value).encode()
                assert secret.encode() not in text, f"secret found in {table}"
                assert secret.split("_")[-1].encode() not in text, f"secret part in {table}"


def test_revoked_key_is_refused_at_once_on_the_revoking_replica(secured: TestClient) -> None:
    created = create_key(secured, "short-lived", ["read_tasks"])
    assert secured.get("/api/v1/stats", headers=bearer(created["key"])).status_code == 200
    assert (
        secured.delete(f"/api/v1/keys/{created['key_id']}", headers=bearer(ADMIN)).status_code
        == 204
    )
    assert secured.get("/api/v1/stats", headers=bearer(created["key"])).status_code == 401
    assert secured.delete(f"/api/v1/keys/{uuid.uuid4()}", headers=bearer(ADMIN)).status_code == 404


def test_bad_key_requests_are_400_and_write_nothing(
    secured: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    for body in (
        {"name": "x", "permissions": ["root"]},
        {"name": "", "permissions": ["admin"]},
        {"name": "x", "permissions": []},
        {"name": "x", "permissions": ["admin"], "rate_limit": -1},
        {"name": "x", "permissions": ["admin"], "burst": 0},
    ):
        response = secured.post("/api/v1/keys", json=body, headers=bearer(ADMIN))
        assert response.status_code == 400, body
    assert db.execute("SELECT count(*) AS n FROM tq_api_keys").fetchone() == {"n": 0}


def test_rate_limit_answers_429_with_retry_after_then_admits_again(secured: TestClient) -> None:
    created = create_key(secured, "slow", ["read_tasks"], rate_limit=1, burst=3)
    headers = bearer(created["key"])
    statuses = [secured.get("/api/v1/stats", headers=headers) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["ratelimit-limit"] == "1"
    assert "ratelimit-remaining" in statuses[0].headers
    refused = statuses[-1]
    assert refused.json() == {"error": "Rate limit exceeded"}
    wait = int(refused.headers["retry-after"])
    assert wait >= 1
    time.sleep(wait)
    assert secured.get("/api/v1/stats", headers=headers).status_code == 200


def test_heartbeats_are_not_held_back_by_the_keys_rate_limit(secured: TestClient) -> None:
    created = create_key(secured, "worker", ["process_tasks"], rate_limit=1, burst=2)
    headers = bearer(created["key"])
    secured.post(
        "/api/v1/workers",
        headers=headers,
        json={"worker_id": WORKER_ID, "task_types": ["noop"], "concurrency": 1},
    )
    for _ in range(HEARTBEAT_BURST_DEFAULT):  # five times the key's burst
        beat = secured.post(f"/api/v1/workers/{WORKER_ID}/heartbeat", json={}, headers=headers)
        assert beat.status_code == 200


def test_a_worker_beating_past_its_budget_gets_429_and_renews_nothing(
    secured: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    headers = bearer(create_key(secured, "worker", ["process_tasks"])["key"])
    secured.post(
        "/api/v1/workers",
        headers=headers,
        json={"worker_id": WORKER_ID, "task_types": ["noop"], "concurrency": 1},
    )
    path = f"/api/v1/workers/{WORKER_ID}/heartbeat"
    for _ in range(HEARTBEAT_BURST_DEFAULT):
        assert secured.post(path, json={}, headers=headers).status_code == 200
    before = db.execute("SELECT last_heartbeat FROM tq_workers").fetchone()
    refused = secured.post(path, json={"current_tasks": 7}, headers=headers)
    assert refused.status_code == 429
    assert "budget" in refused.json()["error"]
    assert int(refused.headers["Retry-After"]) >= 1
    after = db.execute("SELECT last_heartbeat, current_tasks FROM tq_workers").fetchone()
    assert after is not None and before is not None
    assert (after["last_heartbeat"], after["current_tasks"]) == (before["last_heartbeat"], 0)


async def test_500_concurrent_requests_on_two_replicas_admit_exactly_the_burst(
    database_url: str,
) -> None:
    connectors = [Connector(ConnectorConfig(database_url, max_connections=5)) for _ in range(2)]
    for connector in connectors:
        await connector.open()
    try:
        limiters = [ClusterRateLimiter(c) for c in connectors]
        decisions = await asyncio.gather(
            *(limiters[i % 2].admit("key-a", 0.001, 200) for i in range(500))
        )
        assert sum(d.admitted for d in decisions) == 200
        assert all(d.retry_after_seconds >= 1 for d in decisions if not d.admitted)
        other = await limiters[0].admit("key-b", 0.001, 200)
        assert other.admitted, "keys share a bucket"
    finally:
        for connector in connectors:
            await connector.close()


def test_the_limit_holds_across_two_real_broker_processes(
    database_url: str, tmp_path: Path
) -> None:
    env = {"TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN}
    brokers = [
        BrokerProcess(
            ["--database-url", database_url, "--log-level", "debug"],
            tmp_path / f"broker-{i}.log",
            env=env,
        ).start()
        for i in range(2)
    ]
    try:
        created = httpx.post(
            f"{brokers[0].url}/api/v1/keys",
            headers=bearer(ADMIN),
            json={"name": "shared", "permissions": ["read_tasks"], "rate_limit": 20, "burst": 20},
        ).json()
        secret = created["key"]
        admitted = [0, 0]
        started = time.monotonic()
        duration = 4.0

        def hammer(i: int) -> None:
            with httpx.Client(base_url=brokers[i].url, headers=bearer(secret)) as client:
                while time.monotonic() - started < duration:
                    if client.get("/api/v1/stats").status_code == 200:
                        admitted[i] += 1

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        total = sum(admitted)
        assert total <= 20 + 20 * elapsed, f"{total} admitted in {elapsed:.1f}s"
        assert total >= 0.6 * 20 * elapsed, f"only {total} admitted in {elapsed:.1f}s"
        assert min(admitted) > 0, "one replica admitted nothing"
        for broker in brokers:
            assert secret.split("_")[-1] not in broker.log_path.read_text(), "secret logged"
    finally:
        for broker in brokers:
            broker.stop()


def test_only_the_key_that_registered_a_worker_may_act_as_it(secured: TestClient) -> None:
    owner = bearer(create_key(secured, "owner", ["process_tasks"])["key"])
    other = bearer(create_key(secured, "other", ["process_tasks"])["key"])
    worker = {"worker_id": WORKER_ID, "task_types": ["noop"], "concurrency": 1}
    assert secured.post("/api/v1/workers", json=worker, headers=owner).status_code == 201
    submitted = secured.post("/api/v1/tasks", json={"task_type": "noop"}, headers=bearer(ADMIN))
    assert submitted.status_code == 201
    base = f"/api/v1/workers/{WORKER_ID}"
    fake_lease = {"task_id": str(uuid.uuid4()), "lease_token": str(uuid.uuid4())}
    attempts = {
        "re-register": secured.post("/api/v1/workers", json=worker, headers=other),
        "heartbeat": secured.post(f"{base}/heartbeat", json={}, headers=other),
        "drain": secured.post(f"{base}/drain", headers=other),
        "claim": secured.post("/api/v1/tasks/claim", json={"worker_id": WORKER_ID}, headers=other),
        "complete": secured.post(
            "/api/v1/tasks/complete",
            json={"worker_id": WORKER_ID, "tasks": [{**fake_lease, "result": ""}]},
            headers=other,
        ),
        "release": secured.post(
            "/api/v1/tasks/release",
            json={"worker_id": WORKER_ID, "tasks": [fake_lease]},
            headers=other,
        ),
        "deregister": secured.delete(base, headers=other),
    }
    codes = {call: response.status_code for call, response in attempts.items()}
    assert codes == dict.fromkeys(attempts, 403), codes
    assert "another API key" in attempts["heartbeat"].json()["error"]
    # Nothing changed: the owner still claims the task, and an admin may act as any worker.
    claimed = secured.post("/api/v1/tasks/claim", json={"worker_id": WORKER_ID}, headers=owner)
    assert len(claimed.json()["tasks"]) == 1
    assert secured.post(f"{base}/heartbeat", json={}, headers=bearer(ADMIN)).status_code == 200
    assert secured.delete(base, headers=owner).status_code == 204


def test_a_batch_costs_one_rate_limit_token_per_task(
    secured: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    """A 1 req/s key used to store 794 tasks/s through batches."""
    headers = bearer(
        create_key(secured, "batcher", ["submit_tasks"], rate_limit=1, burst=10)["key"]
    )
    batch = {"tasks": [{"task_type": "noop"} for _ in range(8)]}
    first = secured.post("/api/v1/tasks/batch", json=batch, headers=headers)
    assert first.status_code == 201
    second = secured.post("/api/v1/tasks/batch", json=batch, headers=headers)
    assert second.status_code == 429, "16 tasks from a bucket of 10"
    assert int(second.headers["Retry-After"]) >= 1
    # A batch larger than the burst is admitted from a full bucket, and leaves it in debt.
    other = bearer(create_key(secured, "big", ["submit_tasks"], rate_limit=1, burst=10)["key"])
    big = {"tasks": [{"task_type": "noop"} for _ in range(50)]}
    assert secured.post("/api/v1/tasks/batch", json=big, headers=other).status_code == 201
    single = secured.post("/api/v1/tasks", json={"task_type": "noop"}, headers=other)
    assert single.status_code == 429
    assert int(single.headers["Retry-After"]) >= 30, "the debt of 40 tasks is waited out"
    count = db.execute("SELECT count(*) AS n FROM tq_tasks").fetchone()
    assert count == {"n": 58}


def test_idempotency_keys_are_per_api_key(secured: TestClient) -> None:
    alice = bearer(create_key(secured, "alice", ["submit_tasks"])["key"])
    mallory = bearer(create_key(secured, "mallory", ["submit_tasks"])["key"])
    body = {"task_type": "noop"}
    first = secured.post("/api/v1/tasks", json=body, headers={**alice, "Idempotency-Key": "k-1"})
    assert first.status_code == 201
    again = secured.post("/api/v1/tasks", json=body, headers={**alice, "Idempotency-Key": "k-1"})
    assert (again.status_code, again.json()["task_id"]) == (200, first.json()["task_id"])
    other = secured.post(
        "/api/v1/tasks", json={"task_type": "other"}, headers={**mallory, "Idempotency-Key": "k-1"}
    )
    assert other.status_code == 201, "another key's Idempotency-Key revealed or refused"
    assert other.json()["task_id"] != first.json()["task_id"]


class CountingConnector(Connector):
    """The real connector, counting the transactions it opens."""

    transactions = 0

    def transaction(self):  # type: ignore[no-untyped-def]
        self.transactions += 1
        return super().transaction()


async def test_a_refused_request_costs_the_database_nothing_until_a_token_is_due(
    database_url: str,
) -> None:
    connector = CountingConnector(ConnectorConfig(database_url, max_connections=2))
    await connector.open()
    try:
        limiter = ClusterRateLimiter(connector)
        admitted = [await limiter.admit("key-l3", 0.5, 2) for _ in range(50)]
        assert sum(d.admitted for d in admitted) == 2
        assert all(d.retry_after_seconds >= 1 for d in admitted if not d.admitted)
        # one transaction for the grant, one that found the bucket empty; none for the rest
        assert connector.transactions <= 3, connector.transactions
    finally:
        await connector.close()


def test_the_worker_and_operator_bootstrap_keys_have_only_their_permission(
    database_url: str,
) -> None:
    worker_key, operator_key = "w" * 40, "o" * 40
    settings = BrokerSettings(
        database_url=database_url,
        auth="on",
        admin_api_key=ADMIN,
        worker_api_key=worker_key,
        operator_api_key=operator_key,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        worker, operator = bearer(worker_key), bearer(operator_key)
        registration = {"worker_id": WORKER_ID, "task_types": ["noop"], "concurrency": 1}
        assert api.post("/api/v1/workers", json=registration, headers=worker).status_code == 201
        assert api.get("/api/v1/tasks", headers=worker).status_code == 403
        assert api.get("/api/v1/queue-depth?task_type=noop", headers=operator).status_code == 200
        submit = api.post("/api/v1/tasks", json={"task_type": "noop"}, headers=operator)
        assert submit.status_code == 403
        assert api.get("/api/v1/keys", headers=operator).status_code == 403
    with pytest.raises(ValueError, match="at least 32 characters"):
        BrokerSettings(database_url=database_url, worker_api_key="short")


def test_a_key_with_a_pending_cap_gets_429_once_it_has_that_many_waiting_tasks(
    secured: TestClient, db: psycopg.Connection[dict[str, Any]]
) -> None:
    created = create_key(secured, "capped", ["submit_tasks"], max_pending=3)
    assert created["max_pending"] == 3
    capped = bearer(created["key"])
    first = secured.post(
        "/api/v1/tasks", json={"task_type": "noop"}, headers={**capped, "Idempotency-Key": "c-1"}
    )
    assert first.status_code == 201
    for _ in range(2):
        assert (
            secured.post("/api/v1/tasks", json={"task_type": "noop"}, headers=capped).status_code
            == 201
        )
    refused = secured.post("/api/v1/tasks", json={"task_type": "noop"}, headers=capped)
    assert refused.status_code == 429
    assert "at most 3" in refused.json()["error"]
    batch = {"tasks": [{"task_type": "noop"}]}
    assert secured.post("/api/v1/tasks/batch", json=batch, headers=capped).status_code == 429
    repeat = secured.post(
        "/api/v1/tasks", json={"task_type": "noop"}, headers={**capped, "Idempotency-Key": "c-1"}
    )
    assert (repeat.status_code, repeat.json()["task_id"]) == (200, first.json()["task_id"])
    assert db.execute("SELECT count(*) AS n FROM tq_tasks").fetchone() == {"n": 3}
    # One starts: room for one more. Other keys were never capped.
    admin = bearer(ADMIN)
    worker = {"worker_id": WORKER_ID, "task_types": ["noop"], "concurrency": 1}
    assert secured.post("/api/v1/workers", json=worker, headers=admin).status_code == 201
    claim = secured.post("/api/v1/tasks/claim", json={"worker_id": WORKER_ID}, headers=admin)
    assert len(claim.json()["tasks"]) == 1
    assert (
        secured.post("/api/v1/tasks", json={"task_type": "noop"}, headers=capped).status_code == 201
    )
    assert (
        secured.post("/api/v1/tasks", json={"task_type": "noop"}, headers=capped).status_code == 429
    )
    many = {"tasks": [{"task_type": "noop"} for _ in range(10)]}
    assert secured.post("/api/v1/tasks/batch", json=many, headers=admin).status_code == 201
