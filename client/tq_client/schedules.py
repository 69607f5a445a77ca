"""Wire models and REST calls of periodic schedules (`/api/v1/schedules`), shared by the broker,
the clients, `tq-admin` and the operator.

A schedule fires one task per fire time, from a 5-field `cron` expression read in `timezone`,
or every `interval_seconds`. The one thing not to break: a request names exactly one of `cron`
and `interval_seconds`; the broker checks the cron expression itself (fields, ranges) and
answers 400 for what these models let through.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import quote
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, StrictBool, StrictInt, StrictStr, model_validator

from tq_client.calls import Call, _build, _model, _models, _nothing
from tq_client.models import (
    PRIORITY_DEFAULT,
    Base64Bytes,
    RequestModel,
    TaskType,
    WireModel,
)

# Long enough for the operator's `k8s-<namespace>-<name>` (4 + 63 + 1 + 253 characters).
SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,399}$"
CRON_FIELDS = 5
CRON_MAX_LENGTH = 200
INTERVAL_SECONDS_MAX = 366 * 24 * 3600
TIMEZONE_DEFAULT = "UTC"
NEXT_FIRE_TIMES_SHOWN = 5


class MissedFires(StrEnum):
    """What a schedule does with fire times that passed while no broker could fire them
    (all replicas down, or the leader stalled). Either way it never fires once per missed
    time: a one-hour outage of a minutely schedule is not sixty tasks."""

    FIRE_ONCE = "fire_once"  # one task for the whole missed window (its latest fire time)
    SKIP = "skip"  # none, unless the latest missed time is still within the late tolerance


def _cron_shape(value: str) -> str:
    if len(value.split()) != CRON_FIELDS:
        raise ValueError("cron must have 5 fields: minute hour day-of-month month day-of-week")
    return " ".join(value.split())


def _known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name)") from None
    return value


ScheduleName = Annotated[StrictStr, Field(pattern=SCHEDULE_NAME_PATTERN)]
Cron = Annotated[
    StrictStr, Field(min_length=1, max_length=CRON_MAX_LENGTH), AfterValidator(_cron_shape)
]
IntervalSeconds = Annotated[StrictInt, Field(ge=1, le=INTERVAL_SECONDS_MAX)]
Timezone = Annotated[
    StrictStr,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$"),
    AfterValidator(_known_timezone),
]
Priority = Annotated[StrictInt, Field(ge=0, le=255)]
TimeoutSeconds = Annotated[StrictInt, Field(ge=1, le=86400)]
MaxRetries = Annotated[StrictInt, Field(ge=0, le=100)]


class CreateScheduleRequest(RequestModel):
    """POST /api/v1/schedules: exactly one of `cron` and `interval_seconds`."""

    name: ScheduleName
    cron: Cron | None = None
    interval_seconds: IntervalSeconds | None = None
    timezone: Timezone = TIMEZONE_DEFAULT
    task_type: TaskType
    payload: Base64Bytes = b""
    priority: Priority = PRIORITY_DEFAULT
    # Omitted: each fired task gets the task type's registered default, as a submit would.
    timeout_seconds: TimeoutSeconds | None = None
    max_retries: MaxRetries | None = None
    paused: StrictBool = False
    missed_fires: MissedFires = MissedFires.FIRE_ONCE

    @model_validator(mode="after")
    def _one_timing(self) -> CreateScheduleRequest:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron and interval_seconds")
        return self


class UpdateScheduleRequest(RequestModel):
    """PATCH /api/v1/schedules/{name}: only the fields given change. Giving `cron` turns an
    interval schedule into a cron schedule and the other way round; giving both is a 400."""

    cron: Cron | None = None
    interval_seconds: IntervalSeconds | None = None
    timezone: Timezone | None = None
    task_type: TaskType | None = None
    payload: Base64Bytes | None = None
    priority: Priority | None = None
    timeout_seconds: TimeoutSeconds | None = None
    max_retries: MaxRetries | None = None
    paused: StrictBool | None = None
    missed_fires: MissedFires | None = None

    @model_validator(mode="after")
    def _at_most_one_timing(self) -> UpdateScheduleRequest:
        if self.cron is not None and self.interval_seconds is not None:
            raise ValueError("give at most one of cron and interval_seconds")
        return self


class ScheduleInfo(WireModel):
    """A schedule as stored, with its coming fire times (none while paused) and its last fire."""

    name: str
    cron: str | None
    interval_seconds: int | None
    timezone: str
    task_type: str
    payload: Base64Bytes
    priority: int
    timeout_seconds: int | None  # None: the task type's default when it fires
    max_retries: int | None
    paused: bool
    missed_fires: MissedFires
    next_fire_times: list[datetime]
    last_fire_time: datetime | None
    last_task_id: UUID | None
    created_at: datetime
    updated_at: datetime


Schedules = list[ScheduleInfo]


def _path(name: str) -> str:
    return f"/api/v1/schedules/{quote(name, safe='')}"


def create_schedule_call(**fields: object) -> Call[ScheduleInfo]:
    body = _build(CreateScheduleRequest, **fields)
    return Call("POST", "/api/v1/schedules", _model(ScheduleInfo), frozenset({201}), body=body)


def update_schedule_call(name: str, **fields: object) -> Call[ScheduleInfo]:
    body = _build(UpdateScheduleRequest, **fields)
    return Call("PATCH", _path(name), _model(ScheduleInfo), body=body)


def get_schedule_call(name: str) -> Call[ScheduleInfo]:
    return Call("GET", _path(name), _model(ScheduleInfo))


def list_schedules_call(limit: int | None = None, offset: int | None = None) -> Call[Schedules]:
    query = {"limit": limit, "offset": offset}
    params = tuple((key, str(value)) for key, value in query.items() if value is not None)
    return Call("GET", "/api/v1/schedules", _models(ScheduleInfo), params=params)


def delete_schedule_call(name: str) -> Call[None]:
    return Call("DELETE", _path(name), _nothing, frozenset({204}))
