"""The chaos cluster: one PostgreSQL, three broker replicas, four workers (one of them behind a
link that can be cut), clients that submit and cancel continuously and record every call.

Clients are Jepsen-style: each call is recorded as invoked and then ok, fail or info
(unknown). An unknown submit is retried with the same idempotency key, as a careful client
would; every retry is recorded too.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tq_broker.embedded import EmbeddedPostgres

from ..support.history import History, cancel, submit
from ..support.polling import eventually
from ..support.processes import FAST_BROKER_ENV, BrokerProcess, WorkerProcess, leader_of
from .partition import Link, make_link

LEASE_TTL_SECONDS = float(FAST_BROKER_ENV["TQ_LEASE_TTL_SECONDS"])
CLIENT_TIMEOUT_SECONDS = 3.0  # shorter than a paused broker stays paused: unknown outcomes
TERMINAL = ("completed", "dead_letter", "cancelled")
WORKER_START_TIMEOUT_SECONDS = 60.0
WORKER_DRAIN_SECONDS = 3


@dataclass
class ChaosCluster:
    pg: EmbeddedPostgres
    workdir: Path
    use_namespace: bool
    api_key: str = field(default_factory=lambda: "tq_chaos_" + secrets.token_hex(16))
    brokers: list[BrokerProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    link: Link = field(init=False)
    partitioned_worker: WorkerProcess = field(init=False)
    faulted_workers: list[WorkerProcess] = field(default_factory=list)
    draining_workers: list[WorkerProcess] = field(default_factory=list)
    # (pid, when) of workers stopped with SIGTERM and nothing else at the time
    graceful_stops: list[tuple[int, float]] = field(default_factory=list)
    clients: Clients | None = None
    faulted_brokers: list[BrokerProcess] = field(default_factory=list)
    burners: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def execution_log(self) -> Path:
        return self.workdir / "executions.log"

    @property
    def conninfo(self) -> str:
        return self.pg.conninfo()

    def start(self, broker_count: int = 3, worker_count: int = 4) -> None:
        env = {
            **FAST_BROKER_ENV,
            "TQ_AUTH": "on",
            "TQ_ADMIN_API_KEY": self.api_key,
            "TQ_RATE_LIMIT_PER_SECOND": "1000000",
            "TQ_RATE_LIMIT_BURST": "1000000",
            "TQ_RETENTION_SECONDS": "86400",  # the checker reads every task afterwards
        }
        # Listening beyond loopback lets the namespaced worker reach a broker (auth is on).
        host = ["--host", "0.0.0.0"] if self.use_namespace else []
        for n in range(broker_count):
            broker = BrokerProcess(
                ["--database-url", self.pg.url(), *host], self.workdir / f"broker-{n}.log", env=env
            )
            self.brokers.append(broker.start())
        self.link = make_link(self.brokers[0].port, self.use_namespace)
        worker_env = {"TQ_API_KEY": self.api_key}
        for n in range(worker_count):
            partitioned = n == worker_count - 1
            worker = WorkerProcess(
                self.link.broker_url() if partitioned else self.brokers[n % broker_count].url,
                "tests.support.fault_app:worker",
                self.execution_log,
                self.workdir / f"worker-{n}.log",
                name=f"w{n}",
                drain_seconds=WORKER_DRAIN_SECONDS,
                env=worker_env,
            )
            if partitioned:
                worker.wrap = self.link.command
            self.workers.append(worker.start())
        self.partitioned_worker = self.workers[-1]
        self.wait_workers_registered(worker_count, WORKER_START_TIMEOUT_SECONDS)

    def wait_workers_registered(self, count: int, timeout: float) -> None:
        """Load starts only once every worker can take it: a task submitted before that waits
        for worker start-up, not for the faults the run is about."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:

            def registered() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM tq_workers WHERE status <> 'offline'"
                ).fetchone()
                return row is not None and row[0] >= count

            eventually(registered, timeout, f"{count} workers to register", interval=0.2)

    def leader(self) -> BrokerProcess | None:
        return leader_of(self.brokers)

    def feed_cpu(self) -> None:
        while self.burners:
            burner = self.burners.pop()
            burner.kill()
            burner.wait(10)

    def heal_all(self) -> None:
        self.feed_cpu()
        self.link.heal()
        for worker in self.workers:
            worker.revive()
        for broker in self.brokers:
            broker.revive()

    def stop(self) -> None:
        self.feed_cpu()
        for worker in self.workers:
            worker.stop()
        for broker in self.brokers:
            broker.stop()
        if hasattr(self, "link"):
            self.link.close()

    def unfinished(self) -> int:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tq_tasks WHERE status <> ALL(%s)", (list(TERMINAL),)
            ).fetchone()
        assert row is not None
        return int(row[0])

    def wait_drained(self, timeout: float) -> int:
        """Seconds until every stored task was terminal; raises after `timeout`."""
        started = time.monotonic()
        eventually(lambda: self.unfinished() == 0, timeout, "every task to be terminal", 0.5)
        return round(time.monotonic() - started)


class Clients:
    """Submitters (one per broker) and a canceller, on threads, recording into `history`."""

    def __init__(self, cluster: ChaosCluster, history: History, rate_per_second: float) -> None:
        self.cluster = cluster
        self.history = history
        self.rate_per_second = rate_per_second
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cancellable: list[tuple[str, str]] = []  # (task_id, key) scheduled in the future
        self._lock = threading.Lock()
        self._keys = itertools.count()
        self.errors: list[str] = []  # anything unexpected in a client: a failed run
        self._headers = {"Authorization": f"Bearer {cluster.api_key}"}

    def start(self) -> None:
        """One submitter per broker (started by now), together at `rate_per_second`."""
        submitters = len(self.cluster.brokers)
        assert submitters > 0, "start the cluster before its clients"
        self.cluster.clients = self  # some faults bring their own load (a burst)
        interval = submitters / self.rate_per_second
        for n in range(submitters):
            self._threads.append(
                threading.Thread(target=self._submit_loop, args=(n, interval), daemon=True)
            )
        self._threads.append(threading.Thread(target=self._cancel_loop, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _body(self, key: str, rng: random.Random) -> tuple[dict[str, Any], bool]:
        spec = {
            "key": key,
            "sleep": round(rng.choice([0, 0.02, 0.1, 0.3]), 2),
            "fail_ratio": rng.choice([0, 0, 0, 0.3]),
        }
        body: dict[str, Any] = {
            "task_type": "chaos",
            "payload": base64.b64encode(json.dumps(spec).encode()).decode(),
            "priority": rng.randrange(0, 256),
            "max_retries": rng.randrange(0, 4),
            "timeout_seconds": 30,
        }
        scheduled = rng.random() < 0.2
        if scheduled:
            at = datetime.now(UTC) + timedelta(seconds=rng.uniform(1, 3))
            body["schedule_at"] = at.isoformat().replace("+00:00", "Z")
        return body, scheduled

    def burst(self, count: int) -> None:
        """`count` slow tasks at once, from one thread per broker: a backlog, so that every
        worker holds claimed tasks it has not started yet (its prefetch)."""

        def submit_some(n: int) -> None:
            process = f"burst-{n}"
            spec = {"sleep": 0.3, "fail_ratio": 0}
            with httpx.Client(headers=self._headers, timeout=CLIENT_TIMEOUT_SECONDS) as client:
                for _ in range(count // len(self.cluster.brokers)):
                    key = f"burst-{n}-{next(self._keys)}"
                    payload = json.dumps({**spec, "key": key}).encode()
                    body = {
                        "task_type": "chaos",
                        "payload": base64.b64encode(payload).decode(),
                        "max_retries": 2,
                        "timeout_seconds": 30,
                    }
                    self._submit(client, process, n, key, body)

        threads = [
            threading.Thread(target=submit_some, args=(n,), daemon=True)
            for n in range(len(self.cluster.brokers))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    def _submit_loop(self, n: int, interval: float) -> None:
        rng = random.Random(n)
        process = f"submitter-{n}"
        with httpx.Client(headers=self._headers, timeout=CLIENT_TIMEOUT_SECONDS) as client:
            target = n
            while not self._stop.is_set():
                key = f"chaos-{n}-{next(self._keys)}"
                body, scheduled = self._body(key, rng)
                for attempt in range(4):  # the first try and up to three retries of an unknown
                    outcome, task_id = self._submit(client, process, target, key, body)
                    if outcome == "ok":
                        if scheduled and task_id is not None:
                            with self._lock:
                                self._cancellable.append((task_id, key))
                        break
                    if outcome == "fail-refused":  # that broker is down: a Service would move on
                        target = (target + 1) % len(self.cluster.brokers)
                        break
                    if outcome == "fail":
                        break
                    self._stop.wait(0.5 * (attempt + 1))
                self._stop.wait(interval)

    def _submit(
        self, client: httpx.Client, process: str, target: int, key: str, body: dict[str, Any]
    ) -> tuple[str, str | None]:
        url = f"{self.cluster.brokers[target].url}/api/v1/tasks"
        outcome, task_id = submit(self.history, client, url, process, key, body)
        if outcome == "error":  # the client's own bug: the history stays whole, the run fails
            self.errors.append(f"{process}: submit of {key} raised")
            return "info", None
        return outcome, task_id

    def _cancel_loop(self) -> None:
        rng = random.Random(99)
        with httpx.Client(headers=self._headers, timeout=CLIENT_TIMEOUT_SECONDS) as client:
            while not self._stop.is_set():
                self._stop.wait(0.3)
                with self._lock:
                    if not self._cancellable:
                        continue
                    task_id, key = self._cancellable.pop(rng.randrange(len(self._cancellable)))
                broker = rng.choice(self.cluster.brokers)
                url = f"{broker.url}/api/v1/tasks/{task_id}"
                if cancel(self.history, client, url, "canceller", key, task_id) == "error":
                    self.errors.append(f"canceller: cancel of {task_id} raised")
