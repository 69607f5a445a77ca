"""Which waiting claims a notification wakes: only those that can take the work, oldest first,
as many as there are tasks; a drain ends the worker's own claim; a newer claim ends an older."""

from __future__ import annotations

from tq_broker.notifier import TaskReadyNotifier, parse_ready


def test_a_ready_notification_names_a_type_and_a_count() -> None:
    assert parse_ready("resize 3") == {"resize": 3}
    assert parse_ready("resize") == {"resize": 1}
    assert parse_ready("") is None, "an empty payload wakes everyone"
    assert parse_ready("resize many") is None


def test_only_waiters_of_the_type_wake_and_no_more_than_the_tasks() -> None:
    notifier = TaskReadyNotifier()
    with (
        notifier.waiting("w-old") as old,
        notifier.waiting("w-new") as new,
        notifier.waiting("w-other") as other,
    ):
        old.task_types = frozenset({"resize"})
        new.task_types = frozenset({"resize", "email"})
        other.task_types = frozenset({"email"})
        notifier.on_task_ready("resize 1")
        assert (old.woken.is_set(), new.woken.is_set(), other.woken.is_set()) == (
            True,
            False,
            False,
        ), "one task wakes one waiter of its type, the one waiting longest"
        notifier.on_task_ready("resize 5")
        assert new.woken.is_set() and not other.woken.is_set()


def test_a_waiter_whose_types_are_not_known_yet_wakes_for_anything() -> None:
    notifier = TaskReadyNotifier()
    with notifier.waiting("w") as waiter:
        notifier.on_task_ready("anything 1")
        assert waiter.woken.is_set()


def test_a_stop_notification_ends_only_that_workers_claim() -> None:
    notifier = TaskReadyNotifier()
    with notifier.waiting("w-1") as one, notifier.waiting("w-2") as two:
        notifier.on_worker_stop("w-1")
        assert one.ended is not None and one.woken.is_set()
        assert two.ended is None and not two.woken.is_set()


def test_a_newer_claim_of_a_worker_ends_its_older_one() -> None:
    notifier = TaskReadyNotifier()
    with notifier.waiting("w") as first:
        with notifier.waiting("w") as second:
            assert first.ended is not None
            assert second.ended is None
            assert notifier.waiters() == 1
        assert notifier.waiters() == 0


def test_closing_ends_every_claim_and_any_that_starts_after() -> None:
    notifier = TaskReadyNotifier()
    with notifier.waiting("w-1") as waiting:
        notifier.close()
        assert waiting.ended is not None
    with notifier.waiting("w-2") as late:
        assert late.ended is not None


def test_waiting_types_are_the_union_of_known_ones() -> None:
    notifier = TaskReadyNotifier()
    with notifier.waiting("a") as a, notifier.waiting("b"):
        a.task_types = frozenset({"x", "y"})
        assert notifier.waiting_types() == {"x", "y"}
        assert notifier.wake_every_waiter_of(["y"]) == 2  # b's types are not known yet
