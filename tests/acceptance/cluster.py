"""Real processes for the fault tests: brokers, workers, a submitter, and the history checker.

A `Cluster` runs broker replicas on one database with short leases, and worker processes of
`fault_app`; every acknowledged submit and every 204 cancel is recorded, every handler run is
in the execution log. `check_history` then reads the database and the log and reports every
violation of the queue's guarantees.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from ..support.processes import BrokerProcess, WorkerProcess, leader_of

TERMINAL = {"completed", "dead_letter", "cancelled"}

# Short leases so that faults resolve in seconds, not minutes.
FAST_BROKER_ENV = {
    "TQ_LEASE_TTL_SECONDS": "2",
    "TQ_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "TQ_RESCUE_INTERVAL_SECONDS": "0.2",
    "TQ_BACKOFF_BASE_SECONDS": "0.1",
    "TQ_BACKOFF_CAP_SECONDS": "1",
    "TQ_WORKER_SILENT_SECONDS": "3",
    "TQ_LEADER_LEASE_SECONDS": "2",
    "TQ_DEADLINE_GRACE_SECONDS": "1",
    "TQ_CLAIM_POLL_INTERVAL_SECONDS": "0.2",
    "TQ_POOL_TIMEOUT_SECONDS": "2",
}


@dataclass
class History:
    acknowledged: dict[str, str] = field(default_factory=dict)  # task_id -> key
    max_retries: dict[str, int] = field(default_factory=dict)
    cancelled_at: dict[str, float] = field(default_factory=dict)  # task_id -> time of the 204
    submit_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Submitter:
    """Submits `work` tasks from a thread, recording each acknowledged one."""

    def __init__(
        self,
        broker_url: str,
        history: History,
        sleep: float = 0.05,
        max_retries: int = 5,
        task_type: str = "work",
    ) -> None:
        self.broker_url = broker_url
        self.history = history
        self.sleep = sleep
        self.max_retries = max_retries
        self.task_type = task_type
        self._count = 0

    def submit(self, client: httpx.Client, key: str | None = None) -> str | None:
        self._count += 1
        key = key or f"{self.task_type}-{threading.get_ident()}-{self._count}"
        payload = json.dumps({"key": key, "sleep": self.sleep}).encode()
        body = {
            "task_type": self.task_type,
            "payload": base64.b64encode(payload).decode(),
            "max_retries": self.max_retries,
            "timeout_seconds": 30,
        }
        try:
            response = client.post(f"{self.broker_url}/api/v1/tasks", json=body, timeout=10)
        except httpx.HTTPError:
            with self.history.lock:
                self.history.submit_errors += 1
            return None
        if response.status_code != 201:
            with self.history.lock:
                self.history.submit_errors += 1
            return None
        task_id = str(response.json()["task_id"])
        with self.history.lock:
            self.history.acknowledged[task_id] = key
            self.history.max_retries[task_id] = self.max_retries
        return task_id

    def submit_many(self, n: int) -> list[str]:
        with httpx.Client() as client:
            return [t for t in (self.submit(client) for _ in range(n)) if t]


def read_execution_log(path: Path) -> list[tuple[str, str, int, float]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 4:
            events.append((parts[0], parts[1], int(parts[2]), float(parts[3])))
    return events


def wait_until_all_terminal(conninfo: str, task_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM tq_tasks WHERE task_id = ANY(%s::uuid[]) "
                "AND status NOT IN ('completed', 'dead_letter', 'cancelled')",
                (task_ids,),
            ).fetchone()
            assert row is not None
            if row[0] == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{row[0]} tasks still not terminal after {timeout}s")
            time.sleep(0.2)


def check_history(conninfo: str, history: History, execution_log: Path) -> dict[str, Any]:
    """Every violation of the guarantees, and a summary. An empty `violations` list passes."""
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT task_id::text, status, retry_count, max_retries, result FROM tq_tasks "
            "WHERE task_id = ANY(%s::uuid[])",
            (list(history.acknowledged),),
        ).fetchall()
    stored = {r["task_id"]: r for r in rows}
    key_to_task = {key: task_id for task_id, key in history.acknowledged.items()}
    starts: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for event, key, pid, at in read_execution_log(execution_log):
        if event == "start" and key in key_to_task:
            starts[key_to_task[key]].append((pid, at))
    violations: list[str] = []
    for task_id in history.acknowledged:
        row = stored.get(task_id)
        if row is None:
            violations.append(f"lost: {task_id} was acknowledged but is not stored")
            continue
        if row["status"] not in TERMINAL:
            violations.append(f"not terminal: {task_id} is {row['status']}")
        attempts = len(starts[task_id])
        if attempts > row["max_retries"] + 1:
            violations.append(f"too many attempts: {task_id} ran {attempts} times")
        if row["retry_count"] > row["max_retries"]:
            violations.append(f"retry_count {row['retry_count']} > max_retries for {task_id}")
        if row["status"] == "completed" and attempts == 0:
            violations.append(f"completed without ever running: {task_id}")
        if task_id in history.cancelled_at:
            if row["status"] != "cancelled":
                violations.append(f"cancel acknowledged but {task_id} is {row['status']}")
            late = [at for _, at in starts[task_id] if at > history.cancelled_at[task_id]]
            if late:
                violations.append(f"claimed after its 204 cancel: {task_id}")
    statuses: dict[str, int] = defaultdict(int)
    for row in stored.values():
        statuses[row["status"]] += 1
    return {
        "violations": violations,
        "acknowledged": len(history.acknowledged),
        "statuses": dict(statuses),
        "runs": sum(len(v) for v in starts.values()),
        "starts": starts,
        "stored": stored,
    }


@dataclass
class Cluster:
    database_url: str
    conninfo: str
    workdir: Path
    brokers: list[BrokerProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def execution_log(self) -> Path:
        return self.workdir / "executions.log"

    def start_broker(self, extra_env: dict[str, str] | None = None) -> BrokerProcess:
        n = len(self.brokers)
        broker = BrokerProcess(
            ["--database-url", self.database_url],
            self.workdir / f"broker-{n}.log",
            env={**FAST_BROKER_ENV, **(extra_env or {})},
        )
        self.brokers.append(broker.start())
        return broker

    def start_worker(self, broker: BrokerProcess, concurrency: int = 4) -> WorkerProcess:
        n = len(self.workers)
        worker = WorkerProcess(
            broker.url,
            "tests.support.fault_app:worker",
            self.execution_log,
            self.workdir / f"worker-{n}.log",
            name=f"worker-{n}",
            concurrency=concurrency,
        )
        self.workers.append(worker.start())
        return worker

    def leader(self) -> BrokerProcess | None:
        return leader_of(self.brokers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for broker in self.brokers:
            broker.stop()

    def logs(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            if path.name != "executions.log":
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)
