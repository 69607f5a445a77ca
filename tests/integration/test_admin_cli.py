"""The real `tq-admin` console script, and the async client, against a real broker process.

Every command's table, JSON and YAML output; the error exits (unreachable 3, 401/404/409 1);
API keys with auth on. Each test gets its own broker on its own fresh database.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tq_client.client import (
    AsyncTaskQueueClient,
    Conflict,
    Forbidden,
    NotFound,
    TaskQueueClient,
    Unauthorized,
    Unreachable,
)
from tq_client.models import SubmitTaskRequest, TaskStatus

from ..support.processes import BrokerProcess, bin_path, free_port

ADMIN = "admin-cli-bootstrap-secret-0123456789"
WORKER_ID = "worker-host-12345-abc"


def table(lines: str) -> str:
    return "\n".join(line.strip() for line in lines.strip().splitlines()) + "\n"


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    process = BrokerProcess(["--database-url", database_url], tmp_path / "broker.log").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {"TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN}
    process = BrokerProcess(["--database-url", database_url], tmp_path / "b.log", env=env).start()
    try:
        yield process
    finally:
        process.stop()


def tq_admin(
    url: str, *argv: str, api_key: str | None = None, code: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would, through a pipe (so: no colours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQ_") and "COLOR" not in k}
    env["TQ_URL"] = url
    if api_key is not None:
        env["TQ_API_KEY"] = api_key
    done = subprocess.run(
        [bin_path("tq-admin"), *argv], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "\x1b[" not in done.stdout
    return done


def submit(url: str, *argv: str) -> str:
    out = tq_admin(url, "submit", *argv).stdout
    assert out.startswith("Task submitted: ")
    return out.removeprefix("Task submitted: ").strip()


def register_worker(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        body = {"worker_id": WORKER_ID, "task_types": ["flaky"], "concurrency": 4}
        assert http.post("/api/v1/workers", json=body).status_code == 201
        load = {"cpu_usage_percent": 45.2, "memory_usage_mb": 256, "current_tasks": 3}
        assert http.post(f"/api/v1/workers/{WORKER_ID}/heartbeat", json=load).status_code == 200


def dead_letter(url: str, task_id: str) -> None:
    """Claim the task as a worker and fail it for good."""
    with httpx.Client(base_url=url) as http:
        claim = {"worker_id": WORKER_ID, "max_tasks": 1}
        (task,) = http.post("/api/v1/tasks/claim", json=claim).json()["tasks"]
        assert task["task_id"] == task_id
        failure = {
            "task_id": task_id,
            "lease_token": task["lease_token"],
            "error": "hopeless",
            "retryable": False,
        }
        http.post("/api/v1/tasks/fail", json={"worker_id": WORKER_ID, "tasks": [failure]})


def wait_until_leader(url: str, timeout: float = 30.0) -> None:
    """The only replica takes the leader lock moments after it starts."""
    deadline = time.monotonic() + timeout
    while not httpx.get(f"{url}/health").json()["is_leader"]:
        assert time.monotonic() < deadline, "the broker never became leader"
        time.sleep(0.05)


# --- submit, status, list ---------------------------------------------------------------------


def test_submit_from_a_file_then_status_as_table_json_and_yaml(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    payload = tmp_path / "email.txt"
    payload.write_bytes(b"user@example.com")
    task_id = submit(
        broker.url, "--type", "send_email", "--payload-file", str(payload), "--priority", "200"
    )
    rows = tq_admin(broker.url, "status", task_id).stdout.splitlines()
    assert rows[1] == "│ Field    │ Value                                │"
    assert [row.split("│")[1].strip() for row in rows[3:-1]] == [
        "ID",
        "Type",
        "Status",
        "Priority",
        "Created",
        "Updated",
        "Retries",
        "Limits",
        "Run At",
    ]
    assert rows[3:7] == [
        f"│ ID       │ {task_id} │",
        "│ Type     │ send_email                           │",
        "│ Status   │ pending                              │",
        "│ Priority │ 200                                  │",
    ]
    as_json = json.loads(tq_admin(broker.url, "status", task_id, "--format", "json").stdout)
    assert (as_json["task_id"], as_json["status"], as_json["priority"]) == (task_id, "pending", 200)
    as_yaml = yaml.safe_load(tq_admin(broker.url, "status", task_id, "--format", "yaml").stdout)
    assert as_yaml == as_json


def test_submit_passes_every_option_to_the_broker(broker: BrokerProcess) -> None:
    task_id = submit(
        broker.url,
        "--type",
        "report",
        "--payload",
        "héllo",
        "--priority",
        "7",
        "--schedule-at",
        "2099-01-01T00:00:00+02:00",
        "--timeout",
        "60",
        "--max-retries",
        "0",
        "--idempotency-key",
        "order-1",
    )
    again = submit(
        broker.url,
        "--type",
        "report",
        "--payload",
        "héllo",
        "--priority",
        "7",
        "--schedule-at",
        "2099-01-01T00:00:00+02:00",
        "--timeout",
        "60",
        "--max-retries",
        "0",
        "--idempotency-key",
        "order-1",
    )
    assert again == task_id
    with httpx.Client(base_url=broker.url) as http:
        depth = http.get("/api/v1/queue-depth", params={"task_type": "report"}).json()
    assert (depth["ready"], depth["scheduled"]) == (0, 1)
    done = tq_admin(
        broker.url, "submit", "--type", "report", "--idempotency-key", "order-1", code=1
    )
    assert done.stderr.startswith("tq-admin: 409 Idempotency-Key was already used")


def test_submit_json_prints_the_brokers_answer(broker: BrokerProcess) -> None:
    answer = json.loads(tq_admin(broker.url, "submit", "--type", "a", "--format", "json").stdout)
    assert answer["status"] == "pending"
    uuid.UUID(answer["task_id"])


def test_list_filters_pages_and_formats(broker: BrokerProcess) -> None:
    first = submit(broker.url, "--type", "send_email")
    second = submit(broker.url, "--type", "resize", "--priority", "250")
    third = submit(broker.url, "--type", "send_email")
    tq_admin(broker.url, "cancel", third)

    rows = tq_admin(broker.url, "list").stdout.splitlines()
    assert rows[1].split("│")[1:-1] == [
        f" {h:<{w}} "
        for h, w in [
            ("ID", 36),
            ("Type", 10),
            ("Status", 9),
            ("Priority", 8),
            ("Created", 20),
            ("Updated", 20),
        ]
    ]
    assert [row.split("│")[1].strip() for row in rows[3:-1]] == [third, second, first]

    pending = json.loads(
        tq_admin(broker.url, "list", "--status", "pending", "--format", "json").stdout
    )
    assert [t["task_id"] for t in pending] == [second, first]
    emails = yaml.safe_load(
        tq_admin(broker.url, "list", "--type", "send_email", "--format", "yaml").stdout
    )
    assert [(t["task_id"], t["status"]) for t in emails] == [
        (third, "cancelled"),
        (first, "pending"),
    ]
    page = json.loads(
        tq_admin(broker.url, "list", "--limit", "1", "--offset", "1", "--format", "json").stdout
    )
    assert [t["task_id"] for t in page] == [second]
    assert (
        json.loads(tq_admin(broker.url, "list", "--type", "none", "--format", "json").stdout) == []
    )


def test_list_over_the_brokers_limit_is_its_400(broker: BrokerProcess) -> None:
    done = tq_admin(broker.url, "list", "--limit", "5000", code=1)
    assert done.stderr.startswith("tq-admin: 400 limit: ")


# --- stats, workers, queue-depth, cluster-status ------------------------------------------------


def test_stats_table_json_and_yaml(broker: BrokerProcess) -> None:
    for priority in ("250", "150", "150", "50"):
        submit(broker.url, "--type", "a", "--priority", priority)
    assert tq_admin(broker.url, "stats").stdout == table("""
        ┌─────────────────────┬───────┐
        │ Metric              │ Value │
        ├─────────────────────┼───────┤
        │ Pending Tasks       │ 4     │
        │ In Progress         │ 0     │
        │ Workers             │ 0     │
        │ Queue (High)        │ 1     │
        │ Queue (Normal)      │ 2     │
        │ Queue (Low)         │ 1     │
        │ Completed (1h)      │ 0     │
        │ Failed (1h)         │ 0     │
        │ Avg Processing (ms) │ 0     │
        │ Scheduled (not due) │ 0     │
        └─────────────────────┴───────┘
    """)
    as_json = json.loads(tq_admin(broker.url, "stats", "--format", "json").stdout)
    assert as_json["queue_depth_by_priority"] == {"high": 1, "normal": 2, "low": 1}
    assert yaml.safe_load(tq_admin(broker.url, "stats", "--format", "yaml").stdout) == as_json


def test_workers_table_json_and_yaml(broker: BrokerProcess) -> None:
    assert tq_admin(broker.url, "workers", "--format", "json").stdout == "[]\n"
    register_worker(broker.url)
    assert tq_admin(broker.url, "workers").stdout == table("""
        ┌───────────────────────┬───────┬───────┬───────────┬─────────────┬────────┬────────────┐
        │ Worker ID             │ Tasks │ CPU % │ Memory MB │ Concurrency │ Status │ Task Types │
        ├───────────────────────┼───────┼───────┼───────────┼─────────────┼────────┼────────────┤
        │ worker-host-12345-abc │ 3     │ 45.2  │ 256       │ 4           │ online │ flaky      │
        └───────────────────────┴───────┴───────┴───────────┴─────────────┴────────┴────────────┘
    """)
    (worker,) = json.loads(tq_admin(broker.url, "workers", "--format", "json").stdout)
    assert (worker["worker_id"], worker["cpu_usage_percent"]) == (WORKER_ID, 45.2)
    assert yaml.safe_load(tq_admin(broker.url, "workers", "--format", "yaml").stdout) == [worker]


def test_queue_depth_bars_json_and_yaml_and_the_task_types_nobody_serves(
    broker: BrokerProcess,
) -> None:
    for priority in ("200", "255", "100", "150", "199", "199", "0"):
        submit(broker.url, "--type", "a", "--priority", priority)
    submit(broker.url, "--type", "flaky", "--priority", "0")
    register_worker(broker.url)  # serves "flaky", not "a"
    assert tq_admin(broker.url, "queue-depth").stdout == (
        "Queue Depth by Priority:\n"
        f"  High:   2 {'█' * 25}\n"
        f"  Normal: 4 {'█' * 50}\n"
        f"  Low:    2 {'█' * 25}\n"
        "Unserved (ready tasks, no online worker): a\n"
    )
    as_json = json.loads(tq_admin(broker.url, "queue-depth", "--format", "json").stdout)
    assert as_json == {"high": 2, "normal": 4, "low": 2, "unserved_task_types": ["a"]}
    only_flaky = tq_admin(broker.url, "queue-depth", "--type", "flaky", "--format", "json")
    assert json.loads(only_flaky.stdout)["unserved_task_types"] == []
    assert yaml.safe_load(tq_admin(broker.url, "queue-depth", "--format", "yaml").stdout) == as_json


def test_cluster_status_table_json_and_yaml(broker: BrokerProcess) -> None:
    submit(broker.url, "--type", "a")
    register_worker(broker.url)
    wait_until_leader(broker.url)
    assert tq_admin(broker.url, "cluster-status").stdout == table("""
        ┌───────────────────┬─────────┐
        │ Property          │ Value   │
        ├───────────────────┼─────────┤
        │ Status            │ healthy │
        │ Is Leader         │ true    │
        │ Connected Workers │ 1       │
        │ Pending Tasks     │ 1       │
        └───────────────────┴─────────┘
    """)
    as_json = json.loads(tq_admin(broker.url, "cluster-status", "--format", "json").stdout)
    assert as_json == {
        "status": "healthy",
        "is_leader": True,
        "connected_workers": 1,
        "pending_tasks": 1,
    }
    assert yaml.safe_load(tq_admin(broker.url, "cluster-status", "--format", "yaml").stdout) == (
        as_json
    )


# --- cancel, requeue ----------------------------------------------------------------------------


def test_cancel_a_pending_task_once(broker: BrokerProcess) -> None:
    task_id = submit(broker.url, "--type", "a")
    assert tq_admin(broker.url, "cancel", task_id).stdout == f"Task cancelled: {task_id}\n"
    again = tq_admin(broker.url, "cancel", task_id, code=1)
    assert again.stderr == (
        f"tq-admin: 409 task {task_id} is cancelled; only pending tasks can be cancelled\n"
    )


def test_requeue_a_dead_lettered_task_as_text_json_and_yaml(broker: BrokerProcess) -> None:
    register_worker(broker.url)
    task_id = submit(broker.url, "--type", "flaky", "--max-retries", "0")
    dead_letter(broker.url, task_id)
    status = tq_admin(broker.url, "status", task_id).stdout
    assert "│ Status   │ dead_letter" in status
    assert "│ Error    │ hopeless" in status
    assert "│ Worker   │ worker-host-12345-abc" in status
    assert (
        tq_admin(broker.url, "requeue", task_id).stdout == f"Task requeued: {task_id} (pending)\n"
    )
    refused = tq_admin(broker.url, "requeue", task_id, code=1)
    assert refused.stderr == (
        f"tq-admin: 409 task {task_id} is pending; only dead_letter tasks can be requeued\n"
    )
    dead_letter(broker.url, task_id)
    answer = json.loads(tq_admin(broker.url, "requeue", task_id, "--format", "json").stdout)
    assert answer == {"task_id": task_id, "status": "pending"}
    dead_letter(broker.url, task_id)
    assert yaml.safe_load(tq_admin(broker.url, "requeue", task_id, "--format", "yaml").stdout) == (
        answer
    )


# --- errors -------------------------------------------------------------------------------------


def test_an_unreachable_broker_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["stats"], ["cluster-status"], ["submit", "--type", "a"]):
        done = tq_admin(url, *argv, code=3)
        assert done.stderr == f"tq-admin: broker unreachable at {url}\n"
        assert done.stdout == ""


def test_an_unknown_task_exits_1(broker: BrokerProcess) -> None:
    missing = str(uuid.uuid4())
    for argv in (["status", missing], ["cancel", missing], ["requeue", missing]):
        done = tq_admin(broker.url, *argv, code=1)
        assert done.stderr == f"tq-admin: task {missing} not found\n"


def test_a_missing_or_unknown_key_exits_1_with_401(secured: BrokerProcess) -> None:
    missing = tq_admin(secured.url, "stats", code=1)
    assert missing.stderr == "tq-admin: 401 missing API key: send Authorization: Bearer <key>\n"
    unknown = tq_admin(secured.url, "list", api_key="tq_nope_nope", code=1)
    assert unknown.stderr == "tq-admin: 401 unknown or revoked API key\n"
    # Health needs no key.
    assert "│ Status            │ healthy │" in tq_admin(secured.url, "cluster-status").stdout


# --- keys (auth on) -----------------------------------------------------------------------------


def test_keys_create_list_use_and_revoke(secured: BrokerProcess) -> None:
    created = tq_admin(
        secured.url,
        "keys",
        "create",
        "--name",
        "billing",
        "--permission",
        "submit_tasks",
        "--permission",
        "read_tasks",
        "--rate-limit",
        "50",
        "--burst",
        "100",
        api_key=ADMIN,
    )
    lines = created.stdout.splitlines()
    key_id = lines[0].removeprefix("Key created: ")
    secret = lines[-1].removeprefix("Secret:      ")
    assert lines[1:3] == ["Name:        billing", "Permissions: submit_tasks, read_tasks"]
    assert (
        created.stderr == "tq-admin: warning: store this secret now; it will not be shown again\n"
    )

    task_id = submit_with_key(secured.url, secret)
    assert "│ Status   │ pending" in tq_admin(secured.url, "status", task_id, api_key=secret).stdout
    forbidden = tq_admin(secured.url, "keys", "list", api_key=secret, code=1)
    assert forbidden.stderr.startswith("tq-admin: 403 ")

    listing = tq_admin(secured.url, "keys", "list", api_key=ADMIN).stdout
    assert secret not in listing
    (row,) = [line for line in listing.splitlines() if key_id in line]
    assert [cell.strip() for cell in row.split("│")[2:7]] == [
        "billing",
        secret.split("_")[0] + "_" + secret.split("_")[1],
        "submit_tasks, read_tasks",
        "50",
        "100",
    ]
    (as_json,) = json.loads(
        tq_admin(secured.url, "keys", "list", "--format", "json", api_key=ADMIN).stdout
    )
    assert (as_json["key_id"], as_json["revoked_at"]) == (key_id, None)
    assert "key" not in as_json
    as_yaml = yaml.safe_load(
        tq_admin(secured.url, "keys", "list", "--format", "yaml", api_key=ADMIN).stdout
    )
    assert as_yaml == [as_json]

    assert tq_admin(secured.url, "keys", "revoke", key_id, api_key=ADMIN).stdout == (
        f"Key revoked: {key_id}\n"
    )
    revoked = tq_admin(secured.url, "stats", api_key=secret, code=1)
    assert revoked.stderr == "tq-admin: 401 unknown or revoked API key\n"
    missing = str(uuid.uuid4())
    gone = tq_admin(secured.url, "keys", "revoke", missing, api_key=ADMIN, code=1)
    assert gone.stderr == f"tq-admin: key {missing} not found\n"


def test_keys_create_as_json_shows_the_secret_once(secured: BrokerProcess) -> None:
    done = tq_admin(
        secured.url,
        "keys",
        "create",
        "--name",
        "ci",
        "--permission",
        "admin",
        "--format",
        "json",
        api_key=ADMIN,
    )
    created = json.loads(done.stdout)
    assert created["key"].startswith(created["prefix"])
    assert "will not be shown again" in done.stderr
    as_yaml = tq_admin(
        secured.url,
        "keys",
        "create",
        "--name",
        "ci2",
        "--permission",
        "admin",
        "--format",
        "yaml",
        api_key=ADMIN,
    ).stdout
    assert yaml.safe_load(as_yaml)["name"] == "ci2"


def submit_with_key(url: str, secret: str) -> str:
    done = tq_admin(url, "submit", "--type", "a", api_key=secret)
    return done.stdout.removeprefix("Task submitted: ").strip()


# --- the clients against the broker -------------------------------------------------------------


async def test_the_async_client_covers_the_whole_api(secured: BrokerProcess) -> None:
    async with AsyncTaskQueueClient(secured.url, ADMIN) as client:
        submitted = await client.submit("echo", b"\x00hi", priority=210, idempotency_key="k1")
        assert (await client.submit("echo", b"\x00hi", priority=210, idempotency_key="k1")) == (
            submitted
        )
        batch = await client.submit_batch(
            [SubmitTaskRequest(task_type="noop"), SubmitTaskRequest(task_type="noop", priority=5)]
        )
        task = await client.get(submitted.task_id)
        assert (task.task_type, task.priority, task.status) == ("echo", 210, TaskStatus.PENDING)
        listed = await client.list(status="pending", task_type="noop", limit=10, offset=0)
        # One batch shares one created_at: its order in the list is the broker's tie-break.
        assert {t.task_id for t in listed} == {b.task_id for b in batch}
        await client.cancel(batch[0].task_id)
        with pytest.raises(Conflict):
            await client.cancel(batch[0].task_id)
        with pytest.raises(Conflict):
            await client.requeue(submitted.task_id)
        with pytest.raises(NotFound):
            await client.get(uuid.uuid4())
        stats = await client.stats()
        assert stats.queue_depth_by_priority.model_dump() == {"high": 1, "normal": 0, "low": 1}
        assert await client.workers() == []
        health = await client.health()
        assert (health.status, health.pending_tasks) == ("healthy", 2)
        depth = await client.queue_depth(["echo", "noop"])
        assert (depth.ready, depth.scheduled, depth.in_progress) == (2, 0, 0)

        key = await client.create_key("reader", ["read_tasks"], rate_limit=10, burst=20)
        assert [k.key_id for k in await client.list_keys()] == [key.key_id]
        async with AsyncTaskQueueClient(secured.url, key.key) as reader:
            assert (await reader.get(submitted.task_id)).task_id == submitted.task_id
            with pytest.raises(Forbidden):
                await reader.submit("noop")
            await client.revoke_key(key.key_id)
            with pytest.raises(Unauthorized):
                await reader.stats()

    async with AsyncTaskQueueClient(f"http://127.0.0.1:{free_port()}") as nowhere:
        with pytest.raises(Unreachable):
            await nowhere.health()


def test_the_sync_client_reads_what_the_cli_submitted(broker: BrokerProcess) -> None:
    task_id = submit(broker.url, "--type", "a", "--payload", "x")
    with TaskQueueClient(broker.url) as client:
        task = client.get(task_id)
        assert (str(task.task_id), task.status) == (task_id, TaskStatus.PENDING)
        assert client.health().is_leader in (True, False)


# --- waiting for results, attempts ----------------------------------------------------------


@pytest.fixture
def demo_worker(broker: BrokerProcess, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`tq-worker` with the demo handlers (echo, fail, …), found through TQ_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    with open(tmp_path / "worker.log", "wb") as log:
        process = subprocess.Popen(
            [bin_path("tq-worker"), "--app", "tq_worker.demo:worker"],
            env={**env, "TQ_URL": broker.url},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def test_submit_wait_prints_the_result_and_exits_0_when_it_completed(
    broker: BrokerProcess, demo_worker: subprocess.Popen[bytes]
) -> None:
    done = tq_admin(broker.url, "submit", "--type", "echo", "--json", '{"a": [1, "é"]}', "--wait")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Task submitted: ")
    assert "│ Status   │ completed" in done.stdout
    assert '│ Result   │ {"a":[1,"é"]}' in done.stdout
    as_json = json.loads(
        tq_admin(
            broker.url, "submit", "--type", "echo", "--payload", "x", "--wait", "30",
            "--format", "json",
        ).stdout
    )  # fmt: skip
    assert (as_json["status"], as_json["result"]) == ("completed", "eA==")


def test_wait_exits_1_for_a_dead_letter_and_status_shows_every_attempt_and_the_traceback(
    broker: BrokerProcess, demo_worker: subprocess.Popen[bytes]
) -> None:
    task_id = submit(broker.url, "--type", "fail", "--max-retries", "1")
    done = tq_admin(broker.url, "wait", task_id, "--timeout", "60", code=1)
    assert "│ Status   │ dead_letter" in done.stdout
    assert "│ Error    │ RuntimeError: demo failure" in done.stdout
    assert "Error of the last attempt:\nRuntimeError: demo failure\n\nTraceback" in done.stdout
    status = tq_admin(broker.url, "status", task_id).stdout
    attempts = [row for row in status.splitlines() if "│ failed  │" in row]
    assert [row.split("│")[1].strip() for row in attempts] == ["1", "2"]
    assert all("RuntimeError: demo failure" in row for row in attempts)
    as_json = json.loads(tq_admin(broker.url, "status", task_id, "--format", "json").stdout)
    assert [a["outcome"] for a in as_json["attempts"]] == ["failed", "failed"]
    assert as_json["attempts"][0]["error"].startswith("RuntimeError: demo failure\n\nTraceback")


def test_a_wait_that_times_out_exits_1_and_says_what_the_task_is_doing(
    broker: BrokerProcess,
) -> None:
    task_id = submit(broker.url, "--type", "nobody_serves_this")
    done = tq_admin(broker.url, "wait", task_id, "--timeout", "0.5", code=1)
    assert done.stderr == f"tq-admin: task {task_id} is still pending after 0.5s\n"
    late = tq_admin(broker.url, "submit", "--type", "nobody", "--wait", "0.2", code=1)
    assert late.stdout.startswith("Task submitted: ")
    assert "is still pending after 0.2s" in late.stderr
