"""examples/quickstart run as its README says: a real broker, `tq-worker --app tasks:worker`
from the example's folder, and `python submit.py`, which exits 0 only if every task ended as
the guide (docs/tasks.md) says it would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.processes import REPO_ROOT, BrokerProcess, bin_path, stop_process

QUICKSTART = REPO_ROOT / "examples" / "quickstart"


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(["--database-url", database_url], tmp_path / "broker.log").running() as b:
        yield b


def test_the_quickstart_runs_end_to_end(broker: BrokerProcess, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    env["TQ_URL"] = broker.url
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [bin_path("tq-worker"), "--app", "tasks:worker"],
            cwd=QUICKSTART,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        done = subprocess.run(
            [sys.executable, "submit.py"],
            cwd=QUICKSTART,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        stop_process(worker)
    assert done.returncode == 0, (done.stdout, done.stderr, log_path.read_text())
    assert done.stdout.splitlines() == [
        "summarize: completed {'words': 6, 'top': ['the', 'cat', 'saw']}",
        "fetch_page: completed {'url': 'https://example.com', 'attempt': 3, 'status': 200}",
        "  attempt 1: failed Unavailable: https://example.com answered 503 (attempt 1)",
        "  attempt 2: failed Unavailable: https://example.com answered 503 (attempt 2)",
        "  attempt 3: completed",
        "charge: dead_letter after 0 retries",
        "  PermanentFailure: card declined for order 7",
    ]
    worker_log = log_path.read_text()
    assert "fetch_page failed in" in worker_log and "(attempt 1/" in worker_log
    assert worker.returncode == 0, worker_log
