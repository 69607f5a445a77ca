"""Kill things and check the whole history: every acknowledged task ends in exactly one
terminal state, nothing is lost, no task runs more than max_retries + 1 times, no late result
from a stale lease is accepted, no task is claimed after its 204 cancel."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import psycopg

from tq_broker.embedded import EmbeddedPostgres

from ..support.history import History, cancel, read_runs
from ..support.polling import eventually
from .cluster import Checked, Cluster, Submitter, wait_until_all_terminal

DRAIN_TIMEOUT_SECONDS = 90


def started_by(log: Path, pid: int) -> set[str]:
    return {run.key for run in read_runs(log) if run.pid == pid}


def assert_clean(cluster: Cluster, history: History) -> Checked:
    wait_until_all_terminal(cluster.conninfo, list(history.acknowledged()), DRAIN_TIMEOUT_SECONDS)
    checked = cluster.check(history)
    violations = checked.report.violations
    assert violations == [], f"{violations[:10]}\n{cluster.logs()}"
    return checked


def test_worker_killed_mid_task_loses_nothing(cluster: Cluster) -> None:
    broker = cluster.start_broker()
    victim = cluster.start_worker(broker)
    cluster.start_worker(broker)
    history = History()
    ids = Submitter(broker.url, history, sleep=0.3).submit_many(60)
    eventually(
        lambda: len(started_by(cluster.execution_log, victim.pid)) >= 3,
        30,
        "the victim to start tasks",
    )
    victim.signal(signal.SIGKILL)
    checked = assert_clean(cluster, history)
    assert checked.statuses == {"completed": len(ids)}
    assert len(checked.runs) > len(ids), "the killed worker's tasks were not run again"


def test_worker_paused_past_its_lease_cannot_overwrite_the_rerun(cluster: Cluster) -> None:
    broker = cluster.start_broker()
    paused = cluster.start_worker(broker)
    history = History()
    Submitter(broker.url, history, sleep=1.0).submit_many(8)
    eventually(
        lambda: len(started_by(cluster.execution_log, paused.pid)) >= 4,
        30,
        "the worker to start tasks",
    )
    paused.signal(signal.SIGSTOP)
    held = started_by(cluster.execution_log, paused.pid)
    cluster.start_worker(broker)
    time.sleep(5)  # lease TTL is 2 s: its leases expire and the tasks are run by the other
    paused.signal(signal.SIGCONT)  # it finishes its handlers and reports late, stale results
    checked = assert_clean(cluster, history)
    key_to_task = {k: t for t, k in history.acknowledged().items()}
    paused_runs = {run.run_id for run in checked.runs if run.pid == paused.pid}
    for key in held:
        result = checked.tasks[key_to_task[key]].result
        assert result is not None and result.decode() not in paused_runs, f"stale result: {key}"
    assert checked.statuses == {"completed": 8}


def test_leader_broker_killed_another_replica_takes_over_the_sweeps(cluster: Cluster) -> None:
    first = cluster.start_broker()
    eventually(lambda: cluster.leader() is first, 15, "the first broker to lead")
    second = cluster.start_broker()
    victim = cluster.start_worker(second)
    cluster.start_worker(second)
    history = History()
    Submitter(second.url, history, sleep=0.3).submit_many(40)
    eventually(
        lambda: len(started_by(cluster.execution_log, victim.pid)) >= 2, 30, "tasks to start"
    )
    first.kill()
    victim.signal(signal.SIGKILL)  # its tasks need the (new) leader's rescuer
    started = time.monotonic()
    eventually(lambda: cluster.leader() is second, 15, "the second broker to lead")
    assert time.monotonic() - started < 10
    checked = assert_clean(cluster, history)
    assert checked.statuses == {"completed": 40}


def test_poison_task_that_crashes_its_worker_dead_letters_while_others_flow(
    cluster: Cluster,
) -> None:
    broker = cluster.start_broker()
    workers = [cluster.start_worker(broker, concurrency=2) for _ in range(2)]
    history = History()
    poison = Submitter(broker.url, history, max_retries=2, task_type="crash").submit_many(1)
    healthy = Submitter(broker.url, history, sleep=0.05)
    stop = threading.Event()

    def supervise() -> None:  # what Kubernetes does for a crashed pod
        while not stop.is_set():
            for i, worker in enumerate(workers):
                if not worker.alive():
                    workers[i] = cluster.start_worker(broker, concurrency=2)
            time.sleep(0.1)

    supervisor = threading.Thread(target=supervise)
    supervisor.start()
    try:
        healthy.submit_many(100)
        wait_until_all_terminal(
            cluster.conninfo, list(history.acknowledged()), DRAIN_TIMEOUT_SECONDS
        )
    finally:
        stop.set()
        supervisor.join()
    checked = assert_clean(cluster, history)
    assert checked.tasks[poison[0]].status == "dead_letter"
    assert len(checked.runs_of(poison[0])) == 3
    assert checked.statuses == {"completed": 100, "dead_letter": 1}


def test_cancelled_tasks_are_never_claimed_after_the_204(cluster: Cluster) -> None:
    broker = cluster.start_broker()
    cluster.start_worker(broker, concurrency=1)
    history = History()
    ids = Submitter(broker.url, history, sleep=0.02).submit_many(150)
    keys = history.acknowledged()
    with httpx.Client() as client:
        for task_id in reversed(ids):
            url = f"{broker.url}/api/v1/tasks/{task_id}"
            cancel(history, client, url, "canceller", keys[task_id], task_id)
    answers = [op for op in history.snapshot() if op.f == "cancel" and op.type != "invoke"]
    assert {op.detail for op in answers} <= {"204", "409"}, answers
    cancelled = sum(1 for op in answers if op.type == "ok")
    assert cancelled, "nothing was cancelled: the worker took everything first"
    checked = assert_clean(cluster, history)
    assert checked.statuses.get("cancelled") == cancelled


def test_postgres_restart_under_load_gives_prompt_503s_then_recovers_losing_nothing(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    cluster = Cluster(own_postgres.url(), own_postgres.conninfo(), tmp_path)
    try:
        broker = cluster.start_broker()
        cluster.start_worker(broker)
        cluster.start_worker(broker)
        history = History()
        submitter = Submitter(broker.url, history, sleep=0.05)
        stop = threading.Event()
        slowest = [0.0]

        def submit_continuously() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    submitter.submit(client)
                    slowest[0] = max(slowest[0], time.monotonic() - started)

        thread = threading.Thread(target=submit_continuously)
        thread.start()
        try:
            eventually(lambda: len(history.acknowledged()) >= 100, 30, "load to build up")
            assert own_postgres.pid is not None
            import os

            os.kill(own_postgres.pid, signal.SIGQUIT)  # immediate shutdown, like a crash
            time.sleep(3)
            degraded = httpx.get(f"{broker.url}/health", timeout=10)
            assert degraded.status_code == 503
            own_postgres.start()
            eventually(
                lambda: httpx.get(f"{broker.url}/health", timeout=10).status_code == 200,
                30,
                "the broker to recover",
            )
            before = len(history.acknowledged())
            eventually(lambda: len(history.acknowledged()) > before + 50, 30, "submits to resume")
        finally:
            stop.set()
            thread.join(30)
        assert history.unacknowledged_submits() > 0, "the outage was not observed by the submitter"
        assert slowest[0] < 15, f"a submit waited {slowest[0]:.1f}s during the outage"
        checked = assert_clean(cluster, history)
        assert set(checked.statuses) == {"completed"}
        with psycopg.connect(own_postgres.conninfo()) as conn:
            row = conn.execute("SELECT count(*) FROM tq_tasks").fetchone()
            assert row is not None
            assert row[0] >= len(history.acknowledged())
    finally:
        cluster.stop()
