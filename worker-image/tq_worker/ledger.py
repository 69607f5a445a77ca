"""The tasks this worker holds a lease on, and what stage each is in.

A task enters at claim (QUEUED), runs (RUNNING), waits for its outcome to be acknowledged
(FINISHED), or on drain waits for its release to be acknowledged (RELEASING); it leaves when the
broker answers for it or tells us to abandon it. The one thing not to break: every lease in here
is heartbeated, and an entry is matched by (task_id, lease_token), never by task_id alone — a
task abandoned and claimed again is a different entry.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tq_client.protocol import ClaimedTask, Lease
from tq_worker.context import TaskContext

LeaseKey = tuple[UUID, UUID]  # (task_id, lease_token)


class Stage(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    RELEASING = "releasing"


class StopReason(enum.Enum):
    ABANDONED = "abandoned"  # the lease is no longer ours: drop everything, report nothing
    SHUTDOWN = "shutdown"  # the drain period ended: report a failure
    ABORTED = "aborted"  # asked to stop (POST .../abort): a grace period, then abandoned


@dataclass(eq=False)
class Held:
    task: ClaimedTask
    deadline: float  # loop time: claimed + timeout_seconds, like the broker's hard deadline
    stage: Stage = Stage.QUEUED
    handle: asyncio.Future[Any] | None = None
    stop_reason: StopReason | None = None
    ctx: TaskContext | None = None  # the running attempt's context: cancelled on stop
    started_at: float | None = None  # time.monotonic() when the handler started
    # Resolved when the worker stops waiting for an aborted handler (its grace ended).
    given_up: asyncio.Future[None] | None = None

    @property
    def key(self) -> LeaseKey:
        return (self.task.task_id, self.task.lease_token)

    @property
    def lease(self) -> Lease:
        return Lease(task_id=self.task.task_id, lease_token=self.task.lease_token)

    def stop(self, reason: StopReason) -> None:
        """Cancel the running handler (a sync one keeps its thread; its result is dropped)
        and set its context's cancelled flag, which is all a sync handler can see."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.ctx is not None:
            self.ctx.cancel(reason.value)
        if self.handle is not None and not self.handle.done():
            self.handle.cancel()

    def abort(self, grace_seconds: float) -> None:
        """Ask the running handler to stop: ctx.cancelled for both kinds, CancelledError for
        an async one (a sync one's result is still awaited); after `grace_seconds` the worker
        stops waiting for it. A handler's thread cannot be killed: it runs on, abandoned."""
        if self.stop_reason is not None:
            return
        self.stop_reason = StopReason.ABORTED
        if self.ctx is not None:
            self.ctx.cancel(StopReason.ABORTED.value)
        if isinstance(self.handle, asyncio.Task) and not self.handle.done():
            self.handle.cancel()
        if self.given_up is not None:
            asyncio.get_running_loop().call_later(grace_seconds, _resolve, self.given_up)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_UNFINISHED = (Stage.QUEUED, Stage.RUNNING)


class Ledger:
    def __init__(self) -> None:
        self._held: dict[UUID, Held] = {}
        # Set whenever a task stops counting against capacity (it finished, left, or is released).
        self.changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def unfinished(self) -> int:
        return sum(1 for held in self._held.values() if held.stage in _UNFINISHED)

    @property
    def running_count(self) -> int:
        return sum(1 for held in self._held.values() if held.stage is Stage.RUNNING)

    def add(self, tasks: Iterable[ClaimedTask], now: float) -> list[Held]:
        added = []
        for task in tasks:
            held = Held(task, deadline=now + task.timeout_seconds)
            self._held[task.task_id] = held
            added.append(held)
        return added

    def current(self, task: ClaimedTask) -> Held | None:
        held = self._held.get(task.task_id)
        if held is None or held.task.lease_token != task.lease_token:
            return None
        return held

    def start(
        self, held: Held, handle: asyncio.Future[Any] | None, ctx: TaskContext | None = None
    ) -> None:
        held.stage = Stage.RUNNING
        held.handle = handle
        held.ctx = ctx
        held.started_at = time.monotonic()

    def finish(self, held: Held) -> bool:
        """Mark a running or queued task finished; False if it is no longer held or finished."""
        if self._held.get(held.task.task_id) is not held or held.stage not in _UNFINISHED:
            return False
        held.stage = Stage.FINISHED
        self.changed.set()
        return True

    def remove(self, keys: Iterable[LeaseKey]) -> list[Held]:
        """Forget these leases (acknowledged or abandoned); returns the entries that were held."""
        removed = []
        for task_id, lease_token in keys:
            held = self._held.get(task_id)
            if held is not None and held.task.lease_token == lease_token:
                del self._held[task_id]
                removed.append(held)
        if removed:
            self.changed.set()
        return removed

    def remove_all(self) -> list[Held]:
        removed = list(self._held.values())
        self._held.clear()
        self.changed.set()
        return removed

    def mark_releasing(self) -> list[Held]:
        """Queued tasks that never started become RELEASING: not startable, still heartbeated."""
        queued = [held for held in self._held.values() if held.stage is Stage.QUEUED]
        for held in queued:
            held.stage = Stage.RELEASING
        if queued:
            self.changed.set()
        return queued

    def running(self) -> list[Held]:
        return [held for held in self._held.values() if held.stage is Stage.RUNNING]

    def leases(self) -> list[Held]:
        """Everything held, running tasks first (they matter most if the list must be cut)."""
        order = {Stage.RUNNING: 0, Stage.FINISHED: 1, Stage.QUEUED: 2, Stage.RELEASING: 3}
        return sorted(self._held.values(), key=lambda held: order[held.stage])
