"""Scheduler: fires due periodic schedules, one task per fire time (leader only).

Each fire is one transaction: lock the due schedule row (SKIP LOCKED), record the fire in
tq_schedule_fires (primary key: schedule and fire time), insert the task, move the schedule to
its next fire time. A leader killed half-way rolls all of it back and the next leader fires the
same time; a second leader overlapping for a moment finds the row locked or no longer due; a
fire time already recorded makes no task. Fire times passed while no broker ran (or the
leader stalled) are handled by the schedule's `missed_fires` policy (schedule_times.plan_fire):
at most one task for the whole window, never one per missed time.

The one thing not to break: "now" comes from the injected clock, by default the database's,
so replicas with different clocks agree on what is due and a test can move time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from tq_broker.connector import Connector
from tq_broker.events import EventPublisher
from tq_broker.ids import new_task_id
from tq_broker.ready_announcer import ReadyAnnouncer
from tq_broker.schedule_times import LATE_TOLERANCE_SECONDS_DEFAULT, plan_fire
from tq_broker.schedules import Clock, database_clock, timing_of
from tq_client.models import MAX_RETRIES_DEFAULT, TIMEOUT_SECONDS_DEFAULT
from tq_client.schedules import MissedFires

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS_DEFAULT = 1.0
BATCH_SIZE_DEFAULT = 100
FIRE_RETENTION_SECONDS_DEFAULT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class SchedulerConfig:
    batch_size: int = BATCH_SIZE_DEFAULT  # due schedules fired per run; the rest next run
    # `skip` schedules still fire a due time this late (a leader that was busy, not down).
    late_tolerance_seconds: float = LATE_TOLERANCE_SECONDS_DEFAULT
    fire_retention_seconds: float = FIRE_RETENTION_SECONDS_DEFAULT  # fire records kept


@dataclass(frozen=True)
class SchedulerResult:
    fired: int  # tasks made
    missed_windows: int  # schedules whose fire times passed unfired (fired once, or skipped)
    fires_forgotten: int


class Scheduler:
    name = "scheduler"

    def __init__(
        self,
        connector: Connector,
        config: SchedulerConfig,
        events: EventPublisher,
        ready: ReadyAnnouncer,
        clock: Clock | None = None,
    ) -> None:
        self._db = connector
        self.config = config
        self._events = events
        self._ready = ready
        self._clock = clock or database_clock(connector)

    async def run_once(self) -> SchedulerResult:
        now = await self._clock()
        due = await self._db.fetch_all(
            "schedule_due", {"now": now, "limit": self.config.batch_size}
        )
        fired = missed = 0
        for row in due:
            made, window_missed = await self._fire(row["name"], now)
            fired += made
            missed += window_missed
        forgotten = await self._db.execute(
            "schedule_fire_delete_old",
            {"retention_seconds": self.config.fire_retention_seconds, "batch_size": 1000},
        )
        return SchedulerResult(fired, missed, forgotten)

    async def _fire(self, name: str, now: datetime) -> tuple[bool, bool]:
        """(a task was made, the schedule had missed fire times)."""
        task = None
        async with self._db.transaction() as tx:
            row = await tx.fetch_one("schedule_lock_due", {"name": name, "now": now})
            if row is None:
                return False, False
            plan = plan_fire(
                timing_of(row),
                row["next_fire_at"],
                now,
                MissedFires(row["missed_fires"]),
                self.config.late_tolerance_seconds,
            )
            task_id = new_task_id()
            recorded = None
            if plan.fire_at is not None:
                recorded = await tx.fetch_one(
                    "schedule_fire_insert",
                    {"name": name, "fire_at": plan.fire_at, "task_id": task_id},
                )
            if recorded is not None:
                task = await tx.fetch_one(
                    "task_insert",
                    {
                        "task_id": task_id,
                        "task_type": row["task_type"],
                        "payload": row["payload"],
                        "priority": row["priority"],
                        "run_at": None,
                        "timeout_seconds": row["timeout_seconds"],
                        "max_retries": row["max_retries"],
                        # NULL limits: the type's registered default, else the contract's.
                        "timeout_default": TIMEOUT_SECONDS_DEFAULT,
                        "max_retries_default": MAX_RETRIES_DEFAULT,
                        "idempotency_key": None,
                        "request_digest": None,
                        "key_id": None,
                    },
                )
            await tx.execute(
                "schedule_advance",
                {
                    "name": name,
                    "next_fire_at": plan.next_fire_at,
                    "last_fire_at": plan.fire_at if task is not None else None,
                    "last_task_id": task_id if task is not None else None,
                },
            )
        if plan.missed:
            log.warning(
                "schedule %s missed fire times before %s: %s (missed_fires=%s)",
                name, now.isoformat(), "fired once" if task else "skipped", row["missed_fires"],
            )  # fmt: skip
        if task is not None:
            self._ready.tasks_inserted([task])
            await self._events.publish_rows([task])
        return task is not None, plan.missed
