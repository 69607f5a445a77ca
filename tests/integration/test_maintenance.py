"""The leader's sweeps (called through run_once) and the advisory-lock election, on real
PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.events import EventPublisher
from tq_broker.leader import AdvisoryLockElector
from tq_broker.maintenance.cleaner import Cleaner, CleanerConfig
from tq_broker.maintenance.reaper import Reaper, ReaperConfig
from tq_broker.maintenance.rescuer import Rescuer, RescuerConfig
from tq_broker.services import Schedule, ServiceRunner


@pytest.fixture
async def connector(database_url: str) -> AsyncIterator[Connector]:
    conn = Connector(ConnectorConfig(database_url, min_connections=1))
    await conn.open()
    try:
        yield conn
    finally:
        await conn.close()


def add_leased_task(
    db: psycopg.Connection[dict[str, Any]],
    *,
    lease_left: str,
    claimed_ago: str = "1 second",
    timeout: int = 300,
    retry_count: int = 0,
    max_retries: int = 3,
) -> str:
    row = db.execute(
        """INSERT INTO tq_tasks (task_id, task_type, payload, priority, status, timeout_seconds,
                                 max_retries, retry_count, worker_id, lease_token,
                                 lease_expires_at, claimed_at)
           VALUES (gen_random_uuid(), 'noop', '', 100, 'in_progress', %s, %s, %s, 'w1',
                   gen_random_uuid(), now() + %s::interval, now() - %s::interval)
           RETURNING task_id""",
        (timeout, max_retries, retry_count, lease_left, claimed_ago),
    ).fetchone()
    assert row is not None
    return str(row["task_id"])


def status_of(db: psycopg.Connection[dict[str, Any]], task_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT status, retry_count, error, lease_token FROM tq_tasks WHERE task_id = %s",
        (task_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


async def test_rescuer_fails_expired_leases_and_leaves_live_ones(
    connector: Connector, db: psycopg.Connection[dict[str, Any]]
) -> None:
    expired = add_leased_task(db, lease_left="-1 second")
    live = add_leased_task(db, lease_left="30 seconds")
    last_try = add_leased_task(db, lease_left="-1 second", retry_count=3, max_retries=3)
    result = await Rescuer(connector, RescuerConfig(), EventPublisher(connector)).run_once()
    assert (result.retried, result.dead_lettered) == (1, 1)
    assert status_of(db, expired)["status"] == "failed"
    assert status_of(db, expired)["retry_count"] == 1
    assert "lease expired" in status_of(db, expired)["error"]
    assert status_of(db, expired)["lease_token"] is None
    assert status_of(db, live)["status"] == "in_progress"
    assert status_of(db, last_try)["status"] == "dead_letter"


async def test_rescuer_catches_a_heartbeating_task_past_its_hard_deadline(
    connector: Connector, db: psycopg.Connection[dict[str, Any]]
) -> None:
    hung = add_leased_task(db, lease_left="30 seconds", claimed_ago="100 seconds", timeout=60)
    within = add_leased_task(db, lease_left="30 seconds", claimed_ago="70 seconds", timeout=60)
    result = await Rescuer(
        connector, RescuerConfig(deadline_grace_seconds=30), EventPublisher(connector)
    ).run_once()
    assert result.retried == 1
    assert "deadline exceeded" in status_of(db, hung)["error"]
    assert status_of(db, within)["status"] == "in_progress"


async def test_two_leaders_rescuing_at_once_rescue_each_task_once(
    connector: Connector, db: psycopg.Connection[dict[str, Any]]
) -> None:
    ids = [add_leased_task(db, lease_left="-1 second") for _ in range(300)]
    rescuers = [
        Rescuer(connector, RescuerConfig(batch_size=50), EventPublisher(connector))
        for _ in range(2)
    ]
    results = await asyncio.gather(*(r.run_once() for r in rescuers))
    assert sum(r.retried for r in results) == 300
    counts = db.execute("SELECT retry_count, count(*) AS n FROM tq_tasks GROUP BY 1").fetchall()
    assert counts == [{"retry_count": 1, "n": len(ids)}]


async def test_rescuer_does_not_touch_a_task_completed_meanwhile(
    connector: Connector, db: psycopg.Connection[dict[str, Any]]
) -> None:
    task_id = add_leased_task(db, lease_left="-1 second")
    db.execute(
        "UPDATE tq_tasks SET status = 'completed', lease_token = NULL WHERE task_id = %s",
        (task_id,),
    )
    result = await Rescuer(connector, RescuerConfig(), EventPublisher(connector)).run_once()
    assert (result.retried, result.dead_lettered) == (0, 0)
    assert status_of(db, task_id)["status"] == "completed"


async def test_reaper_marks_only_silent_workers_offline(
    connector: Connector, db: psycopg.Connection[dict[str, Any]]
) -> None:
    db.execute(
        "INSERT INTO tq_workers (worker_id, task_types, concurrency, last_heartbeat) "
        "VALUES ('silent', '{noop}', 1, now() - interval '1 minute'), "
        "('alive', '{noop}', 1, now())"
    )
    result = await Reaper(connector, ReaperConfig(silent_seconds=30)).run_once()
    assert result.marked_offline == 1
    rows = db.execute("SELECT worker_id, status FROM tq_workers ORDER BY 1").fetchall()
    assert rows == [
        {"worker_id": "alive", "status": "online"},
        {"worker_id": "silent", "status": "offline"},
    ]


async def test_cleaner_deletes_only_finished_tasks_past_retention_in_batches(
    connector: Connector, db: psycopg.Connection[dict[str, Any]]
) -> None:
    db.execute(
        """INSERT INTO tq_tasks (task_id, task_type, payload, priority, status, timeout_seconds,
                                 max_retries, finished_at)
           SELECT gen_random_uuid(), 'noop', '', 100, s, 300, 3, now() - interval '2 days'
           FROM unnest(ARRAY['completed', 'dead_letter', 'cancelled']) AS s,
                generate_series(1, 100)"""
    )
    db.execute(
        "INSERT INTO tq_tasks (task_id, task_type, payload, priority, status, "
        "timeout_seconds, max_retries, finished_at) VALUES (gen_random_uuid(), 'noop', "
        "'', 100, 'completed', 300, 3, now())"
    )
    db.execute(
        "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds, "
        "max_retries, created_at) VALUES (gen_random_uuid(), 'noop', '', 100, 300, 3, "
        "now() - interval '9 days')"
    )
    cleaner = Cleaner(connector, CleanerConfig(retention_seconds=86400, batch_size=40))
    result = await cleaner.run_once()
    assert result.tasks_deleted == 300
    remaining = db.execute("SELECT status FROM tq_tasks ORDER BY status").fetchall()
    assert remaining == [{"status": "completed"}, {"status": "pending"}]


@contextlib.asynccontextmanager
async def running(elector: AdvisoryLockElector) -> AsyncIterator[asyncio.Event]:
    """The elector as the broker runs it: a service under the runner."""
    stop = asyncio.Event()
    schedule = Schedule(elector, elector.check_interval_seconds)
    task = asyncio.create_task(ServiceRunner([schedule]).run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_exactly_one_of_several_electors_leads_and_another_takes_over_on_resign(
    database_url: str,
) -> None:
    config = ConnectorConfig(database_url)
    electors = [AdvisoryLockElector(config, check_interval_seconds=0.1) for _ in range(3)]
    async with running(electors[0]) as stop0, running(electors[1]), running(electors[2]):
        await wait_until(lambda: any(e.is_leader for e in electors))
        await asyncio.sleep(0.5)
        assert sum(e.is_leader for e in electors) == 1
        leader = next(e for e in electors if e.is_leader)
        if leader is electors[0]:
            stop0.set()  # graceful stop releases the lock
            await wait_until(lambda: electors[1].is_leader or electors[2].is_leader)
            assert not electors[0].is_leader
        assert sum(e.is_leader for e in electors) == 1


async def test_leader_whose_session_is_killed_steps_down_and_another_leads(
    database_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    config = ConnectorConfig(database_url)
    first = AdvisoryLockElector(config, check_interval_seconds=0.1)
    async with running(first):
        await wait_until(lambda: first.is_leader)
        second = AdvisoryLockElector(config, check_interval_seconds=0.1)
        async with running(second):
            await asyncio.sleep(0.3)
            assert not second.is_leader
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'tq-broker-elector' AND pid IN "
                "(SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
            )
            await wait_until(lambda: second.is_leader or first.is_leader)
            await asyncio.sleep(0.5)
            assert first.is_leader != second.is_leader


class FailsOnFirstRun:
    """A sweep with a bug that strikes once."""

    def __init__(self, inner: Rescuer) -> None:
        self.name = inner.name
        self.inner = inner
        self.runs = 0

    async def run_once(self) -> object:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("boom on the first run")
        return await self.inner.run_once()


async def test_a_sweep_that_raises_on_its_first_run_still_rescues_on_its_second(
    connector: Connector, db: psycopg.Connection[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    expired = add_leased_task(db, lease_left="-1 second")
    sweep = FailsOnFirstRun(Rescuer(connector, RescuerConfig(), EventPublisher(connector)))
    runner = ServiceRunner(
        [Schedule(sweep, 0.05, leader_only=True)],
        is_leader=lambda: True,
        backoff_base_seconds=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until(lambda: status_of(db, expired)["status"] == "failed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert sweep.runs >= 2
    failure = next(r for r in caplog.records if "rescuer failed" in r.getMessage())
    assert failure.exc_info is not None, "the traceback is logged"
    assert "boom on the first run" in caplog.text


class Recorder:
    def __init__(self, name: str, fail_run: bool = False, fail_close: bool = False) -> None:
        self.name = name
        self.fail_run = fail_run
        self.fail_close = fail_close
        self.runs = 0
        self.closed = False

    async def run_once(self) -> None:
        self.runs += 1
        if self.fail_run:
            raise ValueError(f"{self.name} always fails")

    async def close(self) -> None:
        self.closed = True
        if self.fail_close:
            raise ValueError(f"{self.name} cannot close")


async def test_leader_only_services_wait_for_leadership_and_every_service_is_closed() -> None:
    leading = False
    broken = Recorder("broken", fail_run=True, fail_close=True)
    sweep = Recorder("sweep")
    everywhere = Recorder("everywhere")
    runner = ServiceRunner(
        [
            Schedule(broken, 0.01),
            Schedule(sweep, 0.01, leader_only=True),
            Schedule(everywhere, 0.01),
        ],
        is_leader=lambda: leading,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.02,
        leader_poll_seconds=0.01,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await wait_until(lambda: everywhere.runs >= 3 and broken.runs >= 3)
    assert sweep.runs == 0, "a leader-only service ran on a follower"
    leading = True
    await wait_until(lambda: sweep.runs >= 1)
    stop.set()
    await asyncio.wait_for(task, 10)  # returns although a service keeps failing
    assert (broken.closed, sweep.closed, everywhere.closed) == (True, True, True)
    assert runner.failures["broken"] >= 3
