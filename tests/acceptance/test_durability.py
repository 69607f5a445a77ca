"""A task acknowledged with 201 survives the broker being killed with SIGKILL and restarted.

The broker runs as a newcomer runs it: embedded PostgreSQL in a data directory, fsync on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from ..support.processes import BrokerProcess


def test_acknowledged_tasks_survive_sigkill_of_the_broker_and_its_restart(
    data_dir: Path, tmp_path: Path
) -> None:
    broker = BrokerProcess(["--data-dir", str(data_dir)], tmp_path / "broker.log").start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def submit_until_stopped() -> None:
        with httpx.Client(base_url=broker.url, timeout=5) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = client.post(
                        "/api/v1/tasks", json={"task_type": "noop", "priority": n % 256}
                    )
                except httpx.HTTPError:
                    continue  # in flight when the broker died: outcome unknown, not promised
                if response.status_code == 201:
                    acknowledged.append(response.json()["task_id"])

    submitter = threading.Thread(target=submit_until_stopped)
    submitter.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 200:
            assert time.monotonic() < deadline, broker.log()
            time.sleep(0.01)
        broker.kill()
        time.sleep(0.5)
    finally:
        stop.set()
        submitter.join(10)
    assert len(acknowledged) >= 200

    broker.start()  # same data directory: the embedded server reuses it
    try:
        with httpx.Client(base_url=broker.url, timeout=10) as client:
            stored = set()
            offset = 0
            while page := client.get(
                "/api/v1/tasks", params={"limit": 1000, "offset": offset}
            ).json():
                stored |= {t["task_id"] for t in page}
                offset += len(page)
            lost = set(acknowledged) - stored
            assert not lost, f"{len(lost)} acknowledged tasks lost, e.g. {sorted(lost)[:3]}"
            sample = client.get(f"/api/v1/tasks/{acknowledged[-1]}")
            assert sample.status_code == 200
            assert sample.json()["status"] == "pending"
    finally:
        broker.stop()
