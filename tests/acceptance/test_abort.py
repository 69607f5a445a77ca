"""Aborting running tasks and watching their progress, with a real broker and a real worker
process (tests/support/control_app.py): an async handler gets CancelledError, a sync one sees
ctx.cancelled, one that ignores the abort is abandoned at the grace period's end; every one
ends cancelled with who and when, never retried, and the worker's slot is free again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import websockets

from ..support.processes import BrokerProcess, WorkerProcess, bin_path

T = TypeVar("T")
ABORT_GRACE_SECONDS = 1.0
WAIT_SECONDS = 30.0  # generous bound for any one step on a loaded machine
TERMINAL = ("completed", "dead_letter", "cancelled")


@pytest.fixture
def cluster(database_url: str, tmp_path: Path) -> Iterator[tuple[BrokerProcess, WorkerProcess]]:
    env = {
        "TQ_ABORT_GRACE_SECONDS": str(ABORT_GRACE_SECONDS),
        "TQ_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "TQ_BACKOFF_BASE_SECONDS": "0",  # a retry (there must be none) would come at once
    }
    broker = BrokerProcess(["--database-url", database_url], tmp_path / "broker.log", env=env)
    worker = WorkerProcess(
        "", "tests.support.control_app:worker", tmp_path / "runs.log", tmp_path / "worker.log",
        concurrency=1,
    )  # fmt: skip
    with broker.running():
        worker.broker_url = broker.url
        worker.start()
        try:
            yield broker, worker
        finally:
            worker.stop()


def until(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll `probe` until it returns something (not None); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def submit(broker: BrokerProcess, task_type: str) -> str:
    response = httpx.post(
        f"{broker.url}/api/v1/tasks", json={"task_type": task_type, "max_retries": 3}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


def get(broker: BrokerProcess, task_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{broker.url}/api/v1/tasks/{task_id}").json())


def runs(worker: WorkerProcess, task_id: str) -> list[str]:
    if not worker.execution_log.exists():
        return []
    lines = worker.execution_log.read_text().splitlines()
    return [line.split()[0] for line in lines if line.endswith(task_id)]


def started(broker: BrokerProcess, worker: WorkerProcess, task_type: str) -> str:
    task_id = submit(broker, task_type)
    until(f"{task_type} to start", lambda: runs(worker, task_id) or None)
    return task_id


def abort(broker: BrokerProcess, task_id: str) -> dict[str, Any]:
    response = httpx.post(f"{broker.url}/api/v1/tasks/{task_id}/abort")
    assert response.status_code == 202, response.text
    return dict(response.json())


def ended(broker: BrokerProcess, task_id: str) -> dict[str, Any]:
    """The task once it is terminal."""
    return until(
        f"task {task_id} to end",
        lambda: task if (task := get(broker, task_id))["status"] in TERMINAL else None,
    )


def attempts(broker: BrokerProcess, task_id: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{broker.url}/api/v1/tasks/{task_id}/attempts").json())


def assert_cancelled_once(broker: BrokerProcess, task_id: str, aborted: dict[str, Any]) -> None:
    task = ended(broker, task_id)
    assert task["status"] == "cancelled", task
    assert (task["aborted_at"], task["aborted_by"]) == (
        aborted["aborted_at"],
        "anonymous (auth off)",
    )
    assert task["retry_count"] == 0
    # No retry: the only attempt ended cancelled, and the next task runs in the one slot.
    assert [(a["attempt"], a["outcome"]) for a in attempts(broker, task_id)] == [(1, "cancelled")]


def test_an_async_handler_gets_cancelled_error_and_its_task_ends_cancelled(
    cluster: tuple[BrokerProcess, WorkerProcess],
) -> None:
    broker, worker = cluster
    task_id = started(broker, worker, "async_waits")
    aborted = abort(broker, task_id)
    assert_cancelled_once(broker, task_id, aborted)
    assert runs(worker, task_id) == ["start", "cancelled-error"]
    assert get(broker, task_id)["error"] == "aborted: the handler stopped when asked"
    quick = submit(broker, "quick")
    assert ended(broker, quick)["status"] == "completed"


def test_a_sync_handler_that_checks_ctx_cancelled_stops_and_its_progress_was_visible(
    cluster: tuple[BrokerProcess, WorkerProcess],
) -> None:
    broker, worker = cluster
    task_id = started(broker, worker, "sync_checks")
    progress = until("progress on GET", lambda: get(broker, task_id)["progress"])
    assert 0 < progress["fraction"] <= 1 and progress["message"].startswith("step ")
    later = until(
        "a later progress value",
        lambda: (
            ((p := get(broker, task_id)["progress"])["updated_at"] > progress["updated_at"] and p)
            or None
        ),
    )
    assert later["fraction"] > progress["fraction"]  # last value wins
    aborted = abort(broker, task_id)
    assert_cancelled_once(broker, task_id, aborted)
    assert runs(worker, task_id) == ["start", "saw-cancelled"]
    task = get(broker, task_id)
    assert task["result"] is not None  # it returned; the abort still decides the status
    assert task["progress"]["message"].startswith("step ")  # the last progress stays shown


@pytest.mark.parametrize("task_type", ["sync_ignores", "async_ignores"])
def test_a_handler_that_ignores_the_abort_is_abandoned_at_the_grace_end_and_its_slot_freed(
    cluster: tuple[BrokerProcess, WorkerProcess], task_type: str
) -> None:
    broker, worker = cluster
    task_id = started(broker, worker, task_type)
    aborted = abort(broker, task_id)
    assert_cancelled_once(broker, task_id, aborted)
    task = get(broker, task_id)
    assert task["error"].startswith("aborted: the handler did not stop within the 1s grace")
    assert "end" not in runs(worker, task_id)  # it was still running when given up on
    quick = submit(broker, "quick")  # concurrency 1: the abandoned handler holds no slot
    assert ended(broker, quick)["status"] == "completed"
    assert worker.alive()


def test_aborting_a_pending_task_cancels_it_and_it_never_runs(
    cluster: tuple[BrokerProcess, WorkerProcess],
) -> None:
    broker, worker = cluster
    busy = started(broker, worker, "sync_checks")  # holds the worker's one slot
    waiting = submit(broker, "quick")
    response = httpx.post(f"{broker.url}/api/v1/tasks/{waiting}/abort")
    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    abort(broker, busy)
    assert ended(broker, busy)["status"] == "cancelled"
    assert get(broker, waiting)["status"] == "cancelled"
    assert attempts(broker, waiting) == []


def test_progress_and_the_abort_reach_websocket_subscribers(
    cluster: tuple[BrokerProcess, WorkerProcess],
) -> None:
    broker, worker = cluster

    async def watch() -> list[dict[str, Any]]:
        url = broker.url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "subscribe", "filters": {}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))["type"] == (
                "subscribed"
            )
            task_id = await asyncio.to_thread(started, broker, worker, "sync_checks")
            seen: list[dict[str, Any]] = []
            while not any("progress" in t for t in seen):
                seen.append(await next_update(ws, task_id))
            await asyncio.to_thread(abort, broker, task_id)
            while seen[-1]["status"] != "cancelled":
                seen.append(await next_update(ws, task_id))
            return seen

    seen = asyncio.run(watch())
    with_progress = next(t for t in seen if "progress" in t)
    assert with_progress["status"] == "in_progress"
    assert with_progress["progress"]["message"].startswith("step ")
    assert any(t["status"] == "in_progress" and "aborted_at" in t for t in seen)
    assert seen[-1]["aborted_by"] == "anonymous (auth off)"


async def next_update(ws: Any, task_id: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
        if message["type"] == "task_update" and message["task"]["task_id"] == task_id:
            return dict(message["task"])


def test_tq_admin_abort_and_status_show_the_abort_and_the_progress(
    cluster: tuple[BrokerProcess, WorkerProcess],
) -> None:
    broker, worker = cluster
    task_id = started(broker, worker, "sync_checks")
    until("progress on GET", lambda: get(broker, task_id)["progress"])

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [bin_path("tq-admin"), "--url", broker.url, *args],
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )

    status = admin("status", task_id)
    assert status.returncode == 0, status.stderr
    assert "Progress" in status.stdout and "% step " in status.stdout
    aborted = admin("abort", task_id)
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.strip() == f"Abort requested: {task_id} (its worker is stopping it)"
    assert ended(broker, task_id)["status"] == "cancelled"
    shown = admin("status", task_id)
    assert "Aborted" in shown.stdout and "anonymous (auth off)" in shown.stdout
    again = admin("abort", task_id)
    assert again.returncode == 1
    assert "409" in again.stderr and "cancelled" in again.stderr
