"""The leader's scheduler on real PostgreSQL, with an injected clock: one task per fire time
across two brokers, a leader killed between fires and in the middle of one, clock jumps, time
zones and DST, and the missed-window policy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.errors import StoreUnavailable
from tq_broker.events import EventPublisher
from tq_broker.ids import new_task_id
from tq_broker.leader import AdvisoryLockElector
from tq_broker.maintenance.scheduler import Scheduler, SchedulerConfig
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.ready_announcer import ReadyAnnouncer
from tq_broker.schedules import ScheduleStore
from tq_client.schedules import CreateScheduleRequest, UpdateScheduleRequest

T0 = datetime(2026, 6, 1, 10, 0, 30, tzinfo=UTC)


class FakeClock:
    """The time the stores and schedulers see; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    async def __call__(self) -> datetime:
        return self.now


@dataclass
class Replica:
    """What one broker replica brings to scheduling: its pool, its elector, its scheduler."""

    connector: Connector
    elector: AdvisoryLockElector
    scheduler: Scheduler
    store: ScheduleStore


@contextlib.asynccontextmanager
async def replica(database_url: str, clock: FakeClock) -> AsyncIterator[Replica]:
    config = ConnectorConfig(database_url, min_connections=1)
    connector = Connector(config)
    await connector.open()
    events = EventPublisher(connector)
    ready = ReadyAnnouncer(config, TaskReadyNotifier())
    try:
        yield Replica(
            connector,
            AdvisoryLockElector(config, lease_seconds=5),
            Scheduler(connector, SchedulerConfig(), events, ready, clock),
            ScheduleStore(connector, clock),
        )
    finally:
        await connector.close()


def fires(db: psycopg.Connection[dict[str, Any]], name: str = "every-5") -> list[datetime]:
    rows = db.execute(
        "SELECT f.fire_at FROM tq_schedule_fires f JOIN tq_tasks t USING (task_id)"
        " WHERE schedule_name = %s ORDER BY fire_at",
        (name,),
    ).fetchall()
    return [row["fire_at"] for row in rows]


def task_count(db: psycopg.Connection[dict[str, Any]], task_type: str = "report") -> int:
    row = db.execute("SELECT count(*) AS n FROM tq_tasks WHERE task_type = %s", (task_type,))
    return int(row.fetchone()["n"])  # type: ignore[index]


def at(hour: int, minute: int, second: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 6, day, hour, minute, second, tzinfo=UTC)


def schedule(**fields: Any) -> CreateScheduleRequest:
    return CreateScheduleRequest(
        **{"name": "every-5", "cron": "*/5 * * * *", "task_type": "report", **fields}
    )


@pytest.fixture
async def one(database_url: str) -> AsyncIterator[tuple[Replica, FakeClock]]:
    clock = FakeClock(T0)
    async with replica(database_url, clock) as r:
        yield r, clock


async def test_fires_one_task_per_fire_time_and_none_in_between(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    created = await r.store.schedule_insert(schedule(payload=b"hello"))
    assert created.next_fire_times[:2] == [at(10, 5), at(10, 10)]
    assert (await r.scheduler.run_once()).fired == 0
    clock.now = at(10, 5)
    assert (await r.scheduler.run_once()).fired == 1
    assert (await r.scheduler.run_once()).fired == 0  # same time again: nothing
    clock.now = at(10, 9, 59)
    assert (await r.scheduler.run_once()).fired == 0
    clock.now = at(10, 10, 1)
    assert (await r.scheduler.run_once()).fired == 1
    assert fires(db) == [at(10, 5), at(10, 10)]
    shown = await r.store.schedule_get("every-5")
    task = db.execute(
        "SELECT task_id, payload, priority, status FROM tq_tasks ORDER BY created_at DESC"
    ).fetchone()
    assert task is not None
    assert shown.last_task_id == task["task_id"]
    assert shown.last_fire_time == at(10, 10)
    assert (bytes(task["payload"]), task["priority"], task["status"]) == (b"hello", 100, "pending")
    assert shown.next_fire_times[0] == at(10, 15)


async def test_each_fire_time_is_one_task_with_two_brokers_and_a_leader_killed_between_fires(
    database_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    clock = FakeClock(T0)
    async with replica(database_url, clock) as a, replica(database_url, clock) as b:
        await a.store.schedule_insert(schedule())
        await a.elector.run_once()
        await b.elector.run_once()
        assert a.elector.is_leader and not b.elector.is_leader

        clock.now = at(10, 5)
        # Leadership is a hint: let the follower sweep at the same moment, as an overlapping
        # second leader would.
        results = await asyncio.gather(a.scheduler.run_once(), b.scheduler.run_once())
        assert sum(result.fired for result in results) == 1

        # kill -9 of the leader, as PostgreSQL sees it: its sessions end, its lock goes (the
        # follower's election session is cut too; it reconnects on its next round).
        await a.connector.close()
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'tq-broker-elector'"
        )
        for _ in range(3):
            await b.elector.run_once()
        assert b.elector.is_leader

        clock.now = at(10, 10)
        assert (await b.scheduler.run_once()).fired == 1
        assert (await b.scheduler.run_once()).fired == 0
        clock.now = at(10, 15)
        assert (await b.scheduler.run_once()).fired == 1
    assert fires(db) == [at(10, 5), at(10, 10), at(10, 15)]
    assert task_count(db) == 3


async def fire_and_die(
    connector: Connector, db: psycopg.Connection[dict[str, Any]], now: datetime
) -> None:
    """A leader's fire, half done (row locked, fire recorded), when its process dies."""
    async with connector.transaction() as tx:
        await tx.fetch_one("schedule_lock_due", {"name": "every-5", "now": now})
        await tx.fetch_one(
            "schedule_fire_insert", {"name": "every-5", "fire_at": now, "task_id": new_task_id()}
        )
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE state = 'idle in transaction' AND datname = current_database()"
        )


async def test_a_leader_killed_in_the_middle_of_a_fire_leaves_it_to_the_next_leader(
    database_url: str, db: psycopg.Connection[dict[str, Any]]
) -> None:
    clock = FakeClock(T0)
    async with replica(database_url, clock) as a, replica(database_url, clock) as b:
        await a.store.schedule_insert(schedule())
        clock.now = at(10, 5)
        with pytest.raises(StoreUnavailable):
            await fire_and_die(a.connector, db, at(10, 5))
        assert (await b.scheduler.run_once()).fired == 1
        assert (await b.scheduler.run_once()).fired == 0
    assert fires(db) == [at(10, 5)]
    assert task_count(db) == 1


async def test_a_clock_jumping_back_fires_nothing_again_even_after_an_edit(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    await r.store.schedule_insert(schedule())
    clock.now = at(10, 5)
    assert (await r.scheduler.run_once()).fired == 1
    clock.now = at(9, 0)  # the clock jumps back an hour
    assert (await r.scheduler.run_once()).fired == 0
    edited = await r.store.schedule_update("every-5", UpdateScheduleRequest(cron="*/1 * * * *"))
    assert edited.next_fire_times[0] == at(10, 6)  # after the last fire, not after "now"
    clock.now = at(10, 5)
    assert (await r.scheduler.run_once()).fired == 0
    clock.now = at(10, 6)
    assert (await r.scheduler.run_once()).fired == 1
    assert fires(db) == [at(10, 5), at(10, 6)]


async def test_a_missed_window_fires_once_on_recovery_with_fire_once(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    await r.store.schedule_insert(schedule(cron="* * * * *"))
    clock.now = at(13, 30, 10)  # every broker was down for three and a half hours
    result = await r.scheduler.run_once()
    assert (result.fired, result.missed_windows) == (1, 1)
    assert fires(db, "every-5") == [at(13, 30)]  # the latest missed time, once
    assert (await r.store.schedule_get("every-5")).next_fire_times[0] == at(13, 31)
    clock.now = at(13, 31)
    assert (await r.scheduler.run_once()).fired == 1
    assert task_count(db) == 2


async def test_a_missed_window_fires_nothing_with_skip_and_the_schedule_goes_on(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    await r.store.schedule_insert(schedule(cron="0 * * * *", missed_fires="skip"))
    clock.now = at(13, 30)
    result = await r.scheduler.run_once()
    assert (result.fired, result.missed_windows) == (0, 1)
    clock.now = at(14, 0, 20)  # a little late is still on time
    assert (await r.scheduler.run_once()).fired == 1
    assert fires(db) == [at(14, 0)]


async def test_an_interval_schedule_fires_from_its_creation_and_skips_a_missed_window(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    created = await r.store.schedule_insert(schedule(cron=None, interval_seconds=90))
    assert created.next_fire_times[:2] == [T0 + timedelta(seconds=90), T0 + timedelta(seconds=180)]
    clock.now = T0 + timedelta(seconds=90)
    assert (await r.scheduler.run_once()).fired == 1
    clock.now = T0 + timedelta(seconds=90 * 10 + 5)
    assert (await r.scheduler.run_once()).fired == 1  # one for the eight missed
    assert fires(db) == [T0 + timedelta(seconds=90), T0 + timedelta(seconds=900)]


async def test_a_paused_schedule_fires_nothing_and_resumes_from_now(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    await r.store.schedule_insert(schedule(paused=True))
    clock.now = at(11, 0)
    assert (await r.scheduler.run_once()).fired == 0
    resumed = await r.store.schedule_update("every-5", UpdateScheduleRequest(paused=False))
    assert resumed.next_fire_times[0] == at(11, 5)
    assert (await r.scheduler.run_once()).fired == 0
    clock.now = at(11, 5)
    assert (await r.scheduler.run_once()).fired == 1
    assert fires(db) == [at(11, 5)]


@pytest.mark.parametrize(
    ("cron", "timezone", "start", "expected"),
    [
        # 02:30 does not exist in Berlin on 2026-03-29: it fires when the clocks jump, 03:00
        # CEST (01:00 UTC), then at 02:30 CEST again.
        (
            "30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC),
            ["2026-03-29T01:00:00", "2026-03-30T00:30:00"],
        ),
        # 02:30 happens twice in Berlin on 2026-10-25: a daily job runs once, at the first.
        (
            "30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC),
            ["2026-10-25T00:30:00", "2026-10-26T01:30:00"],
        ),
        # An hourly job runs in both 02:00 hours of that night: they are different instants.
        (
            "0 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
            ["2026-10-25T00:00:00", "2026-10-25T01:00:00", "2026-10-25T02:00:00"],
        ),
        # Weekdays at 09:00 in New York: 14:00 UTC in winter, 13:00 UTC after 2026-03-08.
        (
            "0 9 * * 1-5", "America/New_York", datetime(2026, 3, 5, 15, tzinfo=UTC),
            ["2026-03-06T14:00:00", "2026-03-09T13:00:00"],
        ),
        # Half-hour zone.
        (
            "0 0 * * *", "Asia/Kolkata", datetime(2026, 1, 1, tzinfo=UTC),
            ["2026-01-01T18:30:00", "2026-01-02T18:30:00"],
        ),
    ],
)  # fmt: skip
async def test_cron_is_read_in_the_schedules_time_zone_across_dst(
    one: tuple[Replica, FakeClock],
    db: psycopg.Connection[dict[str, Any]],
    cron: str,
    timezone: str,
    start: datetime,
    expected: list[str],
) -> None:
    r, clock = one
    clock.now = start
    created = await r.store.schedule_insert(schedule(cron=cron, timezone=timezone))
    want = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in expected]
    assert created.next_fire_times[: len(want)] == want
    for moment in want:  # and the scheduler fires exactly those instants
        clock.now = moment
        assert (await r.scheduler.run_once()).fired == 1
    assert fires(db) == want


async def test_omitted_limits_are_the_task_types_defaults_when_it_fires(
    one: tuple[Replica, FakeClock], db: psycopg.Connection[dict[str, Any]]
) -> None:
    r, clock = one
    await r.store.schedule_insert(schedule())
    await r.store.schedule_insert(schedule(name="explicit", timeout_seconds=7, max_retries=1))
    db.execute(
        "INSERT INTO tq_task_type_defaults (task_type, max_retries, timeout_seconds, worker_id)"
        " VALUES ('report', 9, 42, 'w1')"
    )
    clock.now = at(10, 5)
    assert (await r.scheduler.run_once()).fired == 2
    limits = db.execute(
        "SELECT f.schedule_name, t.timeout_seconds, t.max_retries FROM tq_schedule_fires f"
        " JOIN tq_tasks t USING (task_id) ORDER BY f.schedule_name"
    ).fetchall()
    assert [tuple(row.values()) for row in limits] == [("every-5", 42, 9), ("explicit", 7, 1)]
