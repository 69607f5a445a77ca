"""Periodic schedules on PostgreSQL: create, read, edit, delete (`/api/v1/schedules`).

Firing is the leader's (maintenance/scheduler.py); this module keeps the rows right for it:
`next_fire_at` is always the schedule's next fire time after the moment it was computed and
after its last fire. The one thing not to break: an edit never moves `next_fire_at` to or
before `last_fire_at`, so no edit, clock jump or leader change can fire a fire time twice
(tq_schedule_fires' primary key would refuse it anyway).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from tq_broker.connector import Connector, Row, UniqueViolation
from tq_broker.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from tq_broker.schedule_times import InvalidTiming, Timing, fire_times_after, next_fire_after
from tq_broker.task_store import PAYLOAD_LIMIT_BYTES_DEFAULT
from tq_client.schedules import (
    NEXT_FIRE_TIMES_SHOWN,
    CreateScheduleRequest,
    ScheduleInfo,
    UpdateScheduleRequest,
)

Clock = Callable[[], Awaitable[datetime]]
_EDITABLE = (
    "cron", "interval_seconds", "timezone", "task_type", "payload", "priority",
    "timeout_seconds", "max_retries", "paused", "missed_fires",
)  # fmt: skip
_TIMING = ("cron", "interval_seconds", "timezone")


def database_clock(connector: Connector) -> Clock:
    """The database's `now()`: one clock for every replica, whatever their own clocks say."""

    async def now() -> datetime:
        row = await connector.fetch_one("db_now")
        assert row is not None
        moment: datetime = row["now"]
        return moment

    return now


def timing_of(row: Row) -> Timing:
    return Timing(row["cron"], row["interval_seconds"], row["timezone"], row["anchor_at"])


def _timing(fields: dict[str, Any], anchor: datetime) -> Timing:
    try:
        return Timing(fields["cron"], fields["interval_seconds"], fields["timezone"], anchor)
    except InvalidTiming as exc:
        raise InvalidRequest(str(exc)) from None


def schedule_info(row: Row) -> ScheduleInfo:
    """The API's view of a row: the coming fire times from its stored next one (none while
    paused: a resumed schedule starts again from the time it is resumed)."""
    coming: list[datetime] = []
    if not row["paused"]:
        timing = timing_of(row)
        coming = [row["next_fire_at"]]
        coming += fire_times_after(timing, row["next_fire_at"], NEXT_FIRE_TIMES_SHOWN - 1)
    return ScheduleInfo.model_validate(
        {
            **row,
            "payload": bytes(row["payload"]),
            "next_fire_times": coming,
            "last_fire_time": row["last_fire_at"],
        }
    )


class ScheduleStore:
    def __init__(
        self,
        connector: Connector,
        clock: Clock | None = None,
        max_payload_bytes: int = PAYLOAD_LIMIT_BYTES_DEFAULT,
    ) -> None:
        self._db = connector
        self._clock = clock or database_clock(connector)
        self._max_payload_bytes = max_payload_bytes

    def _check_payload(self, payload: bytes) -> None:
        if len(payload) > self._max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {len(payload)} bytes decoded; the limit is {self._max_payload_bytes}"
            )

    async def schedule_insert(self, request: CreateScheduleRequest) -> ScheduleInfo:
        self._check_payload(request.payload)
        now = await self._clock()
        fields = request.model_dump()
        timing = _timing(fields, now)
        params = {**fields, "anchor_at": now, "next_fire_at": next_fire_after(timing, now)}
        params["missed_fires"] = str(request.missed_fires)  # its value, not its member name
        try:
            row = await self._db.fetch_one("schedule_insert", params)
        except UniqueViolation:
            raise Conflict(f"a schedule named {request.name!r} exists already") from None
        assert row is not None
        return schedule_info(row)

    async def schedule_get(self, name: str) -> ScheduleInfo:
        row = await self._db.fetch_one("schedule_get", {"name": name})
        if row is None:
            raise NotFound(f"schedule {name!r} not found")
        return schedule_info(row)

    async def schedule_list(self, limit: int, offset: int) -> list[ScheduleInfo]:
        rows = await self._db.fetch_all("schedule_list", {"limit": limit, "offset": offset})
        return [schedule_info(row) for row in rows]

    async def schedule_update(self, name: str, request: UpdateScheduleRequest) -> ScheduleInfo:
        """Apply the given fields. A new timing, or a resume, starts from now: the next fire
        time is the first one after now (and after the last fire)."""
        given = {f: getattr(request, f) for f in request.model_fields_set if f in _EDITABLE}
        given = {f: v for f, v in given.items() if v is not None}
        if "payload" in given:
            self._check_payload(given["payload"])
        now = await self._clock()
        async with self._db.transaction() as tx:
            row = await tx.fetch_one("schedule_get_for_update", {"name": name})
            if row is None:
                raise NotFound(f"schedule {name!r} not found")
            merged = {f: row[f] for f in _EDITABLE} | given
            if "cron" in given:
                merged["interval_seconds"] = None
            if "interval_seconds" in given:
                merged["cron"] = None
            retimed = any(merged[f] != row[f] for f in _TIMING)
            resumed = row["paused"] and not merged["paused"]
            new_interval = merged["interval_seconds"] != row["interval_seconds"]
            anchor = now if new_interval else row["anchor_at"]
            timing = _timing(merged, anchor)
            next_fire_at = row["next_fire_at"]
            if retimed or resumed:
                start = max(now, row["last_fire_at"] or now)
                next_fire_at = next_fire_after(timing, start)
            params = {**merged, "name": name, "anchor_at": anchor, "next_fire_at": next_fire_at}
            params["payload"] = bytes(params["payload"])
            params["missed_fires"] = str(params["missed_fires"])
            updated = await tx.fetch_one("schedule_update", params)
        assert updated is not None
        return schedule_info(updated)

    async def schedule_delete(self, name: str) -> None:
        if await self._db.fetch_one("schedule_delete", {"name": name}) is None:
            raise NotFound(f"schedule {name!r} not found")
