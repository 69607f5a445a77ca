"""When a schedule fires: its fire times, and what to do about fire times that were missed.

Pure functions of a `Timing` and instants; the scheduler and the schedule store pass in the
time (the database's clock, or a test's), so nothing here reads a clock.

The one thing not to break: every instant in and out is timezone-aware, and a cron expression
is read in the schedule's own time zone (as cronsim reads it: a time skipped by a DST jump
fires right after the jump; a repeated hour fires once for a daily job), so "0 3 * * *" in
Europe/Berlin is 03:00 Berlin time on both sides of a DST change.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from tq_client.schedules import MissedFires

LATE_TOLERANCE_SECONDS_DEFAULT = 60.0
_CHECK_FROM = datetime(2000, 1, 1)  # any instant: an expression fires from all or from none
# Look-back steps for the latest fire time at or before an instant: a minutely cron finds it in
# the first hour; a yearly one may need the full year.
_LOOKBACKS = (timedelta(hours=1), timedelta(days=2), timedelta(days=40), timedelta(days=400))


class InvalidTiming(ValueError):
    """The cron expression or the interval cannot be fired."""


@dataclass(frozen=True)
class Timing:
    cron: str | None
    interval_seconds: int | None
    timezone: str
    anchor: datetime  # interval schedules fire at anchor + k * interval, k >= 1

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise InvalidTiming("exactly one of cron and interval_seconds")
        if self.cron is not None:
            check_cron(self.cron, self.timezone)


def check_cron(expression: str, timezone: str) -> None:
    """Raise InvalidTiming for an expression cronsim refuses or that never fires."""
    try:
        next(CronSim(expression, _CHECK_FROM.replace(tzinfo=ZoneInfo(timezone))))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise InvalidTiming(f"invalid cron expression {expression!r}: {exc}") from None


def _cron_after(timing: Timing, after: datetime) -> Iterator[datetime]:
    assert timing.cron is not None
    local = after.astimezone(ZoneInfo(timing.timezone))
    for moment in CronSim(timing.cron, local):
        yield moment.astimezone(UTC)


def next_fire_after(timing: Timing, after: datetime) -> datetime:
    """The first fire time strictly after `after`."""
    if timing.interval_seconds is not None:
        step = timing.interval_seconds
        elapsed = (after - timing.anchor).total_seconds()
        k = max(1, math.floor(elapsed / step) + 1)
        moment = timing.anchor + timedelta(seconds=k * step)
        while moment <= after:  # float rounding at the boundary
            moment += timedelta(seconds=step)
        return moment
    for moment in _cron_after(timing, after):
        if moment > after:
            return moment
    raise InvalidTiming(f"cron expression {timing.cron!r} has no fire time after {after}")


def fire_times_after(timing: Timing, after: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    moment = after
    for _ in range(count):
        moment = next_fire_after(timing, moment)
        times.append(moment)
    return times


def latest_fire_at_or_before(timing: Timing, due: datetime, now: datetime) -> datetime:
    """The last fire time in [due, now]; `due` is itself a fire time at or before `now`."""
    if timing.interval_seconds is not None:
        step = timedelta(seconds=timing.interval_seconds)
        latest = timing.anchor + step * math.floor((now - timing.anchor) / step)
        return max(latest, due)
    for lookback in (*_LOOKBACKS, now - due):
        start = max(due - timedelta(microseconds=1), now - lookback)
        latest_seen: datetime | None = None
        for moment in _cron_after(timing, start):
            if moment > now:
                break
            latest_seen = moment
        if latest_seen is not None:
            return max(latest_seen, due)
    return due


@dataclass(frozen=True)
class FirePlan:
    fire_at: datetime | None  # the fire time to make a task for; None: fire nothing
    next_fire_at: datetime
    missed: bool  # some due fire time gets no task of its own (the window was missed)


def plan_fire(
    timing: Timing,
    due: datetime,
    now: datetime,
    policy: MissedFires,
    late_tolerance_seconds: float = LATE_TOLERANCE_SECONDS_DEFAULT,
) -> FirePlan:
    """What a due schedule does now: fire its latest due time once (`fire_once`), or only if
    that time is no older than the late tolerance (`skip`); either way the next fire time is
    the first one after now, so a missed window never turns into a burst of tasks."""
    latest = latest_fire_at_or_before(timing, due, now)
    upcoming = next_fire_after(timing, now)
    on_time = (now - latest).total_seconds() <= late_tolerance_seconds
    fire = policy is MissedFires.FIRE_ONCE or on_time
    return FirePlan(latest if fire else None, upcoming, latest != due or not fire)
