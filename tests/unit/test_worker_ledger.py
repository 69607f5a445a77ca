"""The worker's ledger of held leases: stages, capacity and (task_id, lease_token) matching."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tq_client.protocol import ClaimedTask
from tq_worker.ledger import Ledger, Stage, StopReason


def claimed(task_id: uuid.UUID | None = None, timeout_seconds: int = 10) -> ClaimedTask:
    return ClaimedTask(
        task_id=task_id or uuid.uuid4(),
        task_type="t",
        payload=b"",
        priority=100,
        lease_token=uuid.uuid4(),
        lease_expires_at=datetime.now(UTC),
        timeout_seconds=timeout_seconds,
        retry_count=0,
        max_retries=3,
    )


def test_claimed_tasks_are_queued_with_a_deadline_from_the_claim() -> None:
    ledger = Ledger()
    [held] = ledger.add([claimed(timeout_seconds=30)], now=100.0)
    assert (held.stage, held.deadline) == (Stage.QUEUED, 130.0)
    assert (len(ledger), ledger.unfinished, ledger.running_count) == (1, 1, 0)


def test_only_queued_and_running_tasks_count_against_capacity() -> None:
    ledger = Ledger()
    _queued, b, c = ledger.add([claimed(), claimed(), claimed()], now=0.0)
    ledger.start(b, None)
    ledger.start(c, None)
    assert ledger.finish(c)
    assert (ledger.unfinished, ledger.running_count, len(ledger)) == (2, 1, 3)
    assert ledger.changed.is_set()
    assert not ledger.finish(c), "finishing twice is refused"


def test_a_lease_is_matched_by_its_token_not_only_its_task_id() -> None:
    ledger = Ledger()
    old = claimed()
    [held] = ledger.add([old], now=0.0)
    again = claimed(task_id=old.task_id)  # abandoned, then claimed again: a new token
    assert ledger.current(again) is None
    assert ledger.remove([(old.task_id, again.lease_token)]) == []
    assert ledger.current(old) is held
    assert ledger.remove([held.key]) == [held]
    assert ledger.current(old) is None and not ledger.finish(held)


def test_on_drain_queued_tasks_become_releasing_still_heartbeated_but_not_unfinished() -> None:
    ledger = Ledger()
    queued, running = ledger.add([claimed(), claimed()], now=0.0)
    ledger.start(running, None)
    assert ledger.mark_releasing() == [queued]
    assert queued.stage is Stage.RELEASING
    assert ledger.unfinished == 1
    assert {h.key for h in ledger.leases()} == {queued.key, running.key}


def test_leases_list_running_tasks_first() -> None:
    ledger = Ledger()
    queued, running, finished = ledger.add([claimed(), claimed(), claimed()], now=0.0)
    ledger.start(running, None)
    ledger.start(finished, None)
    ledger.finish(finished)
    assert ledger.leases() == [running, finished, queued]
    assert ledger.running() == [running]


async def test_stopping_a_held_task_cancels_its_handler_and_remembers_the_first_reason() -> None:
    import asyncio

    ledger = Ledger()
    [held] = ledger.add([claimed()], now=0.0)
    handle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ledger.start(held, handle)
    held.stop(StopReason.ABANDONED)
    held.stop(StopReason.SHUTDOWN)
    assert handle.cancelled() and held.stop_reason is StopReason.ABANDONED


def test_remove_all_empties_the_ledger() -> None:
    ledger = Ledger()
    ledger.add([claimed(), claimed()], now=0.0)
    assert len(ledger.remove_all()) == 2 and len(ledger) == 0
