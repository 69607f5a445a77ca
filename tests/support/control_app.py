"""Handlers for the abort and progress tests (tests/acceptance/test_abort.py). Each appends
`<event> <task_id>` lines to the file named by TQ_TEST_EXECUTION_LOG, so a test can see what a
handler saw from outside its process.

- `async_waits`: async; reports progress, then sleeps until cancelled (CancelledError, logged).
- `sync_checks`: sync; steps with progress until `ctx.cancelled`, then returns.
- `sync_ignores`: sync; ignores the abort and sleeps on (for a minute).
- `async_ignores`: async; swallows CancelledError and sleeps on (for a minute).
- `quick`: returns at once (shows that a slot is free again).
"""

from __future__ import annotations

import asyncio
import os
import time

from tq_worker import Worker
from tq_worker.context import TaskContext

worker = Worker()
STEP_SECONDS = 0.05
IGNORE_SECONDS = 60.0


def _log(event: str, ctx: TaskContext) -> None:
    with open(os.environ["TQ_TEST_EXECUTION_LOG"], "a", encoding="ascii") as log:
        log.write(f"{event} {ctx.task_id}\n")


@worker.task("async_waits")
async def async_waits(payload: bytes, ctx: TaskContext) -> bytes:
    _log("start", ctx)
    ctx.progress(0.25, "waiting")
    try:
        await asyncio.sleep(IGNORE_SECONDS)
    except asyncio.CancelledError:
        _log("cancelled-error", ctx)
        raise
    return b"slept"


@worker.task("sync_checks")
def sync_checks(payload: bytes, ctx: TaskContext) -> bytes:
    _log("start", ctx)
    step = 0
    while not ctx.cancelled:
        step += 1
        ctx.progress(min(1.0, step / 1000), f"step {step}")
        time.sleep(STEP_SECONDS)
    _log("saw-cancelled", ctx)
    return b"stopped early"


@worker.task("sync_ignores")
def sync_ignores(payload: bytes, ctx: TaskContext) -> bytes:
    _log("start", ctx)
    time.sleep(IGNORE_SECONDS)
    _log("end", ctx)
    return b"finally"


@worker.task("async_ignores")
async def async_ignores(payload: bytes, ctx: TaskContext) -> bytes:
    _log("start", ctx)
    deadline = time.monotonic() + IGNORE_SECONDS
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(STEP_SECONDS)
        except asyncio.CancelledError:
            _log("swallowed", ctx)
    return b"finally"


@worker.task("quick")
def quick(payload: bytes) -> bytes:
    return b"done"
