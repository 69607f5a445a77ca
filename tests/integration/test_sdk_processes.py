"""`tq-worker` as a real process against a real broker with auth on: the key from `--api-key`
or TQ_API_KEY, the URL from TQ_URL (or its old name TQ_BROKER_URL), JSON log lines with one
line per finished task, and a refused key that names the setting to fix."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tq_client import TaskQueueClient
from tq_client.models import TaskStatus

from ..support.processes import BrokerProcess, bin_path
from .test_worker_runtime import FAST_BROKER

ADMIN = "sdk-processes-bootstrap-secret-0123456789"
WAIT_SECONDS = 60.0


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {**FAST_BROKER, "TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN}
    process = BrokerProcess(["--database-url", database_url], tmp_path / "b.log", env=env).start()
    try:
        yield process
    finally:
        process.stop()


def worker_env(**settings: str) -> dict[str, str]:
    """The test's environment without any TQ_ setting of the machine, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    return {**env, **settings}


def run_worker(
    env: dict[str, str], *argv: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """A worker that is expected to exit by itself (a refused key)."""
    return subprocess.run(
        [bin_path("tq-worker"), "--app", "tq_worker.demo:worker", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_missing_or_wrong_key_exits_and_names_the_setting_to_fix(
    secured: BrokerProcess,
) -> None:
    missing = run_worker(worker_env(TQ_URL=secured.url))
    assert missing.returncode == 1
    assert "set --api-key or TQ_API_KEY to a key with the process_tasks permission" in (
        missing.stderr
    )
    wrong = run_worker(worker_env(TQ_URL=secured.url, TQ_API_KEY="tq_wrong_key"))
    assert wrong.returncode == 1
    assert "does not accept this API key" in wrong.stderr and "TQ_API_KEY" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr
    with TaskQueueClient(secured.url, ADMIN) as admin:
        reader = admin.create_key("reader", ["read_tasks"]).key
    refused = run_worker(worker_env(TQ_BROKER_URL=secured.url), "--api-key", reader)
    assert refused.returncode == 1
    assert "lacks the process_tasks permission" in refused.stderr


def test_a_worker_from_tq_url_and_api_key_logs_json_lines_one_per_finished_task(
    secured: BrokerProcess, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    env = worker_env(TQ_URL=secured.url, TQ_LOG_FORMAT="json")
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [bin_path("tq-worker"), "--app", "tq_worker.demo:worker", "--api-key", ADMIN],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        with TaskQueueClient(secured.url, ADMIN) as client:
            echoed = client.submit("echo", b"hi", wait=WAIT_SECONDS)
            failed = client.submit("fail", b"", max_retries=0, wait=WAIT_SECONDS)
            entries = _until_logged(log_path, {str(echoed.task_id), str(failed.task_id)})
    finally:
        worker.terminate()
        worker.wait(30)
    assert (echoed.status, failed.status) == (TaskStatus.COMPLETED, TaskStatus.DEAD_LETTER)
    by_task = {e["task_id"]: e for e in entries if e.get("logger") == "tq_worker.task"}
    done, dead = by_task[str(echoed.task_id)], by_task[str(failed.task_id)]
    assert (done["task_type"], done["outcome"], done["attempt"], done["level"]) == (
        "echo", "completed", 1, "info",
    )  # fmt: skip
    assert (dead["outcome"], dead["will_retry"], dead["error"]) == (
        "failed", False, "RuntimeError: demo failure",
    )  # fmt: skip
    assert isinstance(done["duration_ms"], float)
    assert all({"ts", "level", "logger", "message"} <= e.keys() for e in entries)


def _until_logged(log_path: Path, task_ids: set[str]) -> list[dict[str, Any]]:
    """Every log line parsed as JSON (each must be), once the tasks' lines are there."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]
        if task_ids <= {str(e.get("task_id")) for e in entries}:
            return entries
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)


def test_a_bad_log_format_is_a_usage_error() -> None:
    done = run_worker(worker_env(TQ_LOG_FORMAT="xml"))
    assert done.returncode == 2 and "TQ_LOG_FORMAT" in done.stderr
    admin = subprocess.run(
        [bin_path("tq-admin"), "stats"],
        env=worker_env(TQ_LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert admin.returncode == 2 and "TQ_LOG_FORMAT" in admin.stderr


def test_tq_admin_logs_in_the_shared_json_format_and_keeps_stdout_for_its_output(
    secured: BrokerProcess,
) -> None:
    env = worker_env(TQ_URL=secured.url, TQ_API_KEY=ADMIN)
    done = subprocess.run(
        [bin_path("tq-admin"), "--log-format", "json", "--log-level", "debug", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "│ Pending Tasks" in done.stdout
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert any(e["logger"] == "httpx" and "/api/v1/stats" in e["message"] for e in entries)
    quiet = subprocess.run(
        [bin_path("tq-admin"), "stats"], env=env, capture_output=True, text=True, timeout=30
    )
    assert quiet.returncode == 0 and quiet.stderr == ""  # no request lines by default
