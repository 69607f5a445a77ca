"""Real processes for the fault tests: brokers, workers and a submitter, checked by the one
history checker of tests/support (the chaos tier's).

A `Cluster` runs broker replicas on one database with short leases, and worker processes of
`tests/support/fault_app.py`. Every submit and cancel is recorded in a `History` (invoke, then
ok / fail / info), every committed transition by the audit trigger, every handler run in the
execution log; `Cluster.check` reads them all and lists every violation of the queue's
guarantees.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from ..support import audit
from ..support.checker import Report, StoredTask, check, read_tasks
from ..support.history import History, Run, read_runs, submit
from ..support.polling import eventually
from ..support.processes import FAST_BROKER_ENV, BrokerProcess, WorkerProcess, leader_of

# Every task of a fault test is terminal this long after it was stored (the checker's bound).
FINISH_BOUND_SECONDS = 120.0
_submitters = itertools.count()


class Submitter:
    """Submits tasks of one type (`work` by default), recording every call in `history`."""

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
        self._name = f"submitter-{next(_submitters)}"
        self._count = itertools.count()

    def submit(self, client: httpx.Client) -> str | None:
        """The task id once acknowledged; None when refused or the outcome is unknown."""
        key = f"{self.task_type}-{self._name}-{next(self._count)}"
        payload = json.dumps({"key": key, "sleep": self.sleep}).encode()
        body = {
            "task_type": self.task_type,
            "payload": base64.b64encode(payload).decode(),
            "max_retries": self.max_retries,
            "timeout_seconds": 30,
        }
        url = f"{self.broker_url}/api/v1/tasks"
        _, task_id = submit(self.history, client, url, self._name, key, body)
        return task_id

    def submit_many(self, n: int) -> list[str]:
        with httpx.Client(timeout=10) as client:
            return [t for t in (self.submit(client) for _ in range(n)) if t]


def wait_until_all_terminal(conninfo: str, task_ids: list[str], timeout: float) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:

        def none_left() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM tq_tasks WHERE task_id = ANY(%s::uuid[]) "
                "AND status NOT IN ('completed', 'dead_letter', 'cancelled')",
                (task_ids,),
            ).fetchone()
            return row is not None and row[0] == 0

        eventually(none_left, timeout, "every task to be terminal", interval=0.2)


@dataclass(frozen=True)
class Checked:
    """The checker's report, with what the tests look at besides its violations."""

    report: Report
    tasks: dict[str, StoredTask]  # by task id
    runs: list[Run]

    @property
    def statuses(self) -> dict[str, int]:
        return dict(Counter(task.status for task in self.tasks.values()))

    def runs_of(self, task_id: str) -> list[Run]:
        key = self.tasks[task_id].key
        return [run for run in self.runs if run.key == key]


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
        if n == 0:  # the first broker migrated: the witness goes in before any task
            audit.install(self.conninfo)
        return broker

    def check(self, history: History) -> Checked:
        """Every violation of the guarantees in the whole run (empty: it passed)."""
        tasks = read_tasks(self.conninfo)
        runs = read_runs(self.execution_log)
        transitions = audit.read_transitions(self.conninfo)
        report = check(history.snapshot(), tasks, transitions, runs, FINISH_BOUND_SECONDS)
        return Checked(report, {task.task_id: task for task in tasks}, runs)

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
