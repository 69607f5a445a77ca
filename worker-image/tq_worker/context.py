"""What a running handler may know about its task: `TaskContext`, passed as `ctx`.

A handler that declares a parameter named `ctx` gets one per attempt:

    @worker.task("resize", json=True)
    async def resize(job: dict, ctx: TaskContext) -> dict:
        if ctx.attempt > 1: ...
        if ctx.cancelled: ...

The one thing not to break: `cancel()` may be called from any thread (the event loop, or a
sync handler's own thread) and is seen by both kinds of handler — sync ones through the
`threading.Event` (`ctx.cancel_event.wait(…)`), async ones through `await ctx.wait_cancelled()`
— and it is idempotent: the first reason wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from tq_worker.progress import ProgressSlot


class TaskContext:
    """One attempt of one task, as its handler sees it.

    `attempt` counts from 1 (`retry_count + 1`); the task runs at most `max_retries + 1`
    times. `deadline` is when this worker gives up on the attempt (claim time plus the task's
    `timeout_seconds`), in UTC. `cancelled` turns true when the runtime asks the handler to
    stop (the task was aborted, its lease was lost, or the worker is shutting down); handlers
    that run for long should look at it between steps and return or raise.
    """

    def __init__(
        self,
        task_id: UUID,
        task_type: str,
        attempt: int,
        max_retries: int,
        timeout_seconds: int,
        remaining_seconds: float | None = None,
    ) -> None:
        self.task_id = task_id
        self.task_type = task_type
        self.attempt = attempt
        self.max_retries = max_retries
        self.timeout_seconds = timeout_seconds
        remaining = float(timeout_seconds) if remaining_seconds is None else remaining_seconds
        self._deadline_monotonic = time.monotonic() + remaining
        self.deadline: datetime = datetime.now(UTC) + timedelta(seconds=remaining)
        self.cancel_event = threading.Event()
        self.cancel_reason: str | None = None
        self.progress_slot = ProgressSlot()  # read by the heartbeat (docs/task-control.md)
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.log = logging.LoggerAdapter(
            logging.getLogger("tq_worker.task"),
            {"task_id": str(task_id), "task_type": task_type, "attempt": attempt},
        )

    @property
    def cancelled(self) -> bool:
        """True once the runtime (or anyone holding the context) called `cancel()`."""
        return self.cancel_event.is_set()

    @property
    def is_last_attempt(self) -> bool:
        """No retry follows a failure of this attempt."""
        return self.attempt > self.max_retries

    def remaining_seconds(self) -> float:
        """Seconds left before the deadline (0 once it passed)."""
        return max(0.0, self._deadline_monotonic - time.monotonic())

    def cancel(self, reason: str = "cancelled") -> bool:
        """Ask the handler to stop; True if this call did it (False: already cancelled)."""
        with self._lock:
            if self.cancel_event.is_set():
                return False
            self.cancel_reason = reason
            self.cancel_event.set()
            waiters = list(self._waiters)
        for loop, event in waiters:
            _set_soon(loop, event)
        return True

    async def wait_cancelled(self) -> str:
        """Wait (in an async handler) until the attempt is cancelled; returns the reason."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            already = self.cancel_event.is_set()
            if not already:
                self._waiters.append((loop, event))
        try:
            if not already:
                await event.wait()
        finally:
            with self._lock:
                if (loop, event) in self._waiters:
                    self._waiters.remove((loop, event))
        return self.cancel_reason or "cancelled"

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the task got (0 to 1, an optional message of up to 500 characters).
        Cheap: it makes no request; the worker's next heartbeat carries the latest value to
        the broker (GET /api/v1/tasks/{id} shows it). ValueError/TypeError on a bad value."""
        self.progress_slot.report(fraction, message)

    def __repr__(self) -> str:
        state = f", cancelled={self.cancel_reason!r}" if self.cancelled else ""
        return (
            f"TaskContext(task_id={self.task_id}, task_type={self.task_type!r}, "
            f"attempt={self.attempt}/{self.max_retries + 1}{state})"
        )


def _set_soon(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    """Set an asyncio.Event from any thread; a closed loop has nobody left to wake."""
    try:
        running: Any = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        event.set()
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(event.set)
