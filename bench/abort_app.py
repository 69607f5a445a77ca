"""Handlers for bench/bench_abort.py: each writes `<event> <task_id> <time.time()>` lines to
the file named by TQ_BENCH_ABORT_LOG when it starts and when it sees the abort."""

from __future__ import annotations

import asyncio
import os
import time

from tq_worker import TaskContext, Worker

worker = Worker()
POLL_SECONDS = 0.01


def _log(event: str, ctx: TaskContext) -> None:
    with open(os.environ["TQ_BENCH_ABORT_LOG"], "a", encoding="ascii") as log:
        log.write(f"{event} {ctx.task_id} {time.time():.6f}\n")


@worker.task("async_waits")
async def async_waits(payload: bytes, ctx: TaskContext) -> None:
    _log("start", ctx)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _log("seen", ctx)
        raise


@worker.task("sync_checks")
def sync_checks(payload: bytes, ctx: TaskContext) -> None:
    _log("start", ctx)
    while not ctx.cancel_event.wait(POLL_SECONDS):
        pass
    _log("seen", ctx)
