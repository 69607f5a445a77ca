"""Fire times and the missed-window plan, as pure functions of a timing and instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tq_broker.schedule_times import (
    InvalidTiming,
    Timing,
    fire_times_after,
    latest_fire_at_or_before,
    next_fire_after,
    plan_fire,
)
from tq_client.schedules import MissedFires

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def cron(expression: str, timezone: str = "UTC") -> Timing:
    return Timing(expression, None, timezone, ANCHOR)


def test_next_fire_is_strictly_after() -> None:
    assert next_fire_after(cron("0 * * * *"), ANCHOR) == ANCHOR + timedelta(hours=1)
    every = Timing(None, 60, "UTC", ANCHOR)
    assert next_fire_after(every, ANCHOR) == ANCHOR + timedelta(minutes=1)
    assert next_fire_after(every, ANCHOR + timedelta(seconds=59.999)) == ANCHOR + timedelta(
        minutes=1
    )
    assert fire_times_after(every, ANCHOR + timedelta(minutes=1), 2) == [
        ANCHOR + timedelta(minutes=2),
        ANCHOR + timedelta(minutes=3),
    ]


def test_the_latest_missed_fire_is_found_after_years_of_a_minutely_or_yearly_schedule() -> None:
    now = datetime(2028, 7, 4, 12, 34, 56, tzinfo=UTC)
    assert latest_fire_at_or_before(cron("* * * * *"), ANCHOR, now) == now.replace(second=0)
    yearly = cron("0 0 1 1 *")
    assert latest_fire_at_or_before(yearly, ANCHOR, now) == datetime(2028, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("policy", list(MissedFires))
def test_an_on_time_fire_fires_under_either_policy(policy: MissedFires) -> None:
    due = ANCHOR + timedelta(minutes=5)
    plan = plan_fire(cron("*/5 * * * *"), due, due + timedelta(seconds=2), policy)
    assert (plan.fire_at, plan.next_fire_at, plan.missed) == (
        due,
        due + timedelta(minutes=5),
        False,
    )


def test_a_missed_window_fires_once_or_not_at_all() -> None:
    due = ANCHOR + timedelta(minutes=5)
    now = ANCHOR + timedelta(hours=2, minutes=7)
    once = plan_fire(cron("*/5 * * * *"), due, now, MissedFires.FIRE_ONCE)
    skip = plan_fire(cron("*/5 * * * *"), due, now, MissedFires.SKIP)
    assert once.fire_at == ANCHOR + timedelta(hours=2, minutes=5)
    assert skip.fire_at is None
    assert once.next_fire_at == skip.next_fire_at == ANCHOR + timedelta(hours=2, minutes=10)
    assert once.missed and skip.missed


@pytest.mark.parametrize("expression", ["61 * * * *", "0 0 30 2 *", "* * * * mon-xyz"])
def test_expressions_that_cannot_fire_are_refused(expression: str) -> None:
    with pytest.raises(InvalidTiming):
        cron(expression)
