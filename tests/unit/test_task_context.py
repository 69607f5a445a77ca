"""TaskContext: what a handler knows about its attempt, and cancellation from any thread."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid

import pytest

from tq_worker.context import TaskContext


async def test_cancel_reaches_sync_handlers_through_the_event_and_async_ones_by_waiting() -> None:
    ctx = TaskContext(uuid.uuid4(), "t", attempt=1, max_retries=0, timeout_seconds=60)
    assert ctx.is_last_attempt
    waiter = asyncio.create_task(ctx.wait_cancelled())
    seen_in_thread = threading.Event()

    def sync_handler() -> None:
        if ctx.cancel_event.wait(10):
            seen_in_thread.set()

    thread = threading.Thread(target=sync_handler)
    thread.start()
    await asyncio.sleep(0)
    # From another thread, as a handler or the runtime might; the first reason wins.
    threading.Thread(target=ctx.cancel, args=("aborted",)).start()
    assert await asyncio.wait_for(waiter, 10) == "aborted"
    thread.join(10)
    assert seen_in_thread.is_set() and ctx.cancelled
    assert ctx.cancel("shutdown") is False and ctx.cancel_reason == "aborted"
    assert await ctx.wait_cancelled() == "aborted"


def test_ctx_log_records_carry_the_task(caplog: pytest.LogCaptureFixture) -> None:
    task_id = uuid.uuid4()
    ctx = TaskContext(task_id, "export", attempt=2, max_retries=3, timeout_seconds=60)
    with caplog.at_level(logging.INFO, logger="tq_worker.task"):
        ctx.log.info("exporting %d rows", 10)
    (record,) = caplog.records
    assert record.getMessage() == "exporting 10 rows"
    assert (record.task_id, record.task_type, record.attempt) == (str(task_id), "export", 2)  # type: ignore[attr-defined]
