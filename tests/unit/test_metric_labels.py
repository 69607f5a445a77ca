"""Bounded label sets for task types: the first N seen, then `other`; top N pending."""

from __future__ import annotations

from tq_broker.metrics import OTHER, TaskTypeLabels, top_pending


def test_the_first_task_types_keep_their_label_and_later_ones_are_other() -> None:
    label = TaskTypeLabels(2)
    assert [label(t) for t in ("a", "b", "c", "a", "d", "b")] == ["a", "b", OTHER, "a", OTHER, "b"]


def test_pending_keeps_the_largest_types_and_sums_the_rest_per_priority() -> None:
    rows = [("a", "normal", 5), ("b", "normal", 50), ("c", "high", 1), ("c", "normal", 2)]
    assert top_pending(rows, 1) == [("b", "normal", 50), (OTHER, "high", 1), (OTHER, "normal", 7)]
    assert sorted(top_pending(rows, 10)) == sorted(rows)
