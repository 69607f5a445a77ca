"""Status conditions: a transition time moves only when the status does."""

from __future__ import annotations

import datetime

from tq_operator.status import condition, utc_timestamp, with_condition

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def test_timestamps_are_utc_with_z() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=2))
    assert utc_timestamp(datetime.datetime(2026, 1, 1, 14, 0, 1, 500, tzinfo=tz)) == (
        "2026-01-01T12:00:01Z"
    )


def test_a_new_condition_is_added_with_its_transition_time() -> None:
    result = with_condition(None, "BrokerReachable", False, "Unreachable", "down", now=T0)
    assert result == [
        {
            "type": "BrokerReachable",
            "status": "False",
            "reason": "Unreachable",
            "message": "down",
            "lastTransitionTime": "2026-01-01T12:00:00Z",
        }
    ]


def test_same_status_keeps_the_transition_time_but_updates_the_message() -> None:
    first = with_condition(None, "BrokerReachable", False, "Unreachable", "down", now=T0)
    again = with_condition(first, "BrokerReachable", False, "Rejected", "401", now=T1)
    assert again[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert again[0]["reason"] == "Rejected"
    assert again[0]["message"] == "401"


def test_a_flip_moves_the_transition_time_and_keeps_other_conditions() -> None:
    other = {"type": "Other", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    first = with_condition([other], "BrokerReachable", False, "Unreachable", "down", now=T0)
    flipped = with_condition(
        first, "BrokerReachable", True, "QueueDepthRead", "ok", generation=3, now=T1
    )
    assert flipped[0] == other
    assert flipped[1]["status"] == "True"
    assert flipped[1]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert flipped[1]["observedGeneration"] == 3
    assert condition({"conditions": flipped}, "BrokerReachable") == flipped[1]
    assert condition({}, "BrokerReachable") is None
