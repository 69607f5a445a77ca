"""The leader's queue-state snapshot keeps label values bounded: past `limit` task types, the
rest fold into `other` (pending and dead letters summed, the oldest wait maximised), and the
unlabelled totals count every task whatever was folded."""

from __future__ import annotations

from tq_broker.metrics import OTHER, queue_snapshot


def waiting(task_type: str, priority: str, pending: int, scheduled: int, oldest: float) -> dict:
    return {
        "task_type": task_type,
        "priority": priority,
        "pending": pending,
        "ready": pending - scheduled,
        "scheduled": scheduled,
        "oldest_ready_seconds": oldest,
    }


def test_types_past_the_limit_fold_into_other_and_totals_stay_whole() -> None:
    rows = [
        waiting("big", "normal", 50, 0, 12.0),
        waiting("big", "high", 5, 0, 3.0),
        waiting("mid", "normal", 20, 2, 40.0),
        waiting("small", "low", 3, 1, 90.0),
        waiting("tiny", "low", 1, 0, 7.0),
    ]
    dead = [{"task_type": t, "dead_letter": n} for t, n in [("x", 9), ("y", 4), ("z", 1)]]
    snapshot = queue_snapshot(rows, dead, {"in_progress": 6, "workers": 2}, limit=2)

    assert snapshot.pending == [
        ("big", "high", 5),
        ("big", "normal", 50),
        ("mid", "normal", 20),
        (OTHER, "low", 4),
    ]
    assert sum(n for _, _, n in snapshot.pending) == 79
    assert snapshot.scheduled == 3
    assert snapshot.oldest_ready_seconds == {"big": 12.0, "mid": 40.0, OTHER: 90.0}
    assert snapshot.dead_letter == {"x": 9, "y": 4, OTHER: 1}
    assert (snapshot.in_progress, snapshot.workers) == (6, 2)


def test_an_empty_queue_is_a_snapshot_of_zeros() -> None:
    snapshot = queue_snapshot([], [], {"in_progress": 0, "workers": 0}, limit=100)
    assert snapshot.pending == [] and snapshot.scheduled == 0
    assert snapshot.oldest_ready_seconds == {} and snapshot.dead_letter == {}
