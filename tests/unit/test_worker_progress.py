"""ctx.progress(): validated where the handler calls it, last value wins, and the heartbeat
sends a value once (until a newer one comes)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from tq_client.protocol import PROGRESS_PER_HEARTBEAT_MAX, ClaimedTask, HeartbeatRequest
from tq_worker.context import TaskContext
from tq_worker.heartbeat import unsent_progress
from tq_worker.ledger import Held


def context() -> TaskContext:
    return TaskContext(uuid4(), "resize", attempt=1, max_retries=0, timeout_seconds=60)


def held_with_context() -> Held:
    """A running task as the worker's ledger holds it, with its handler's context."""
    ctx = context()
    task = ClaimedTask(
        task_id=ctx.task_id, task_type="resize", payload=b"", priority=100,
        lease_token=uuid4(), lease_expires_at=datetime.now(UTC), timeout_seconds=60,
        retry_count=0, max_retries=0,
    )  # fmt: skip
    return Held(task, deadline=0.0, ctx=ctx)


@pytest.mark.parametrize(
    ("fraction", "message", "error"),
    [
        (1.5, None, ValueError),
        (-0.01, None, ValueError),
        (math.nan, None, ValueError),
        (math.inf, None, ValueError),
        ("0.5", None, TypeError),
        (True, None, TypeError),
        (0.5, "x" * 501, ValueError),
        (0.5, b"bytes", TypeError),
        (0.5, "lone \ud800 surrogate", ValueError),
    ],
)
def test_a_bad_progress_value_raises_in_the_handler(
    fraction: object, message: object, error: type[Exception]
) -> None:
    ctx = context()
    with pytest.raises(error):
        ctx.progress(fraction, message)  # type: ignore[arg-type]
    assert ctx.progress_slot.latest is None


def test_the_heartbeat_sends_the_latest_value_once() -> None:
    held = held_with_context()
    ctx = held.ctx
    assert ctx is not None
    assert unsent_progress([held]) == []
    ctx.progress(0, "start")
    ctx.progress(0.5, "half")
    ((report, slot, reported),) = unsent_progress([held])
    assert (report.task_id, report.fraction, report.message) == (ctx.task_id, 0.5, "half")
    slot.mark_sent(reported)
    assert unsent_progress([held]) == []
    ctx.progress(1)
    ((report, _, _),) = unsent_progress([held])
    assert (report.fraction, report.message) == (1.0, None)


def test_a_heartbeat_carries_at_most_the_wire_limit_and_the_rest_go_next() -> None:
    held = []
    for _ in range(PROGRESS_PER_HEARTBEAT_MAX + 5):
        entry = held_with_context()
        assert entry.ctx is not None
        entry.ctx.progress(0.25)
        held.append(entry)
    first = unsent_progress(held)
    assert len(first) == PROGRESS_PER_HEARTBEAT_MAX
    HeartbeatRequest(progress=[report for report, _, _ in first])  # the broker would accept it
    for _, slot, reported in first:
        slot.mark_sent(reported)
    rest = unsent_progress(held)
    assert len(rest) == 5
    assert {r.task_id for r, _, _ in rest}.isdisjoint(r.task_id for r, _, _ in first)
