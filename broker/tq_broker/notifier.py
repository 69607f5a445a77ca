"""Wakes long-polling claims when work they can take becomes ready, and only those.

Every waiting claim on this replica is a `Waiter` for one worker and that worker's task types.
A `tq_task_ready` notification names a task type and how many tasks became ready ("type n");
it wakes at most n waiters of that type, those waiting longest first. Submits are announced by
the submitting replica's `ReadyAnnouncer` (which wakes that replica's waiters itself; its
listener drops the echo), releases and requeues by their own statements. An empty payload (and
every reconnect of the listener) wakes all. A `tq_worker_stop` notification ends the waiting
claim of a draining or deregistered worker at once, on whichever replica it waits.

Readiness by time (a retry's backoff ends, a scheduled `run_at` arrives) sends no notification:
`ReadyCheck` asks once per interval, for all waiters of this replica together, which of their
task types have ready tasks, and wakes every waiter of those. It is also the safety net for a
wake that went to a claim that then ended without claiming.

The one thing not to break: a waiter clears its event *before* its claim statement and waits on
it after, so a notification that arrives while the statement runs is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tq_broker.connector import Connector

log = logging.getLogger(__name__)

TASK_READY_CHANNEL = "tq_task_ready"
WORKER_STOP_CHANNEL = "tq_worker_stop"

_order = itertools.count()


@dataclass(eq=False)
class Waiter:
    worker_id: str
    task_types: frozenset[str] | None = None  # None until the first claim statement says
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None  # why this claim must return now
    order: int = field(default_factory=lambda: next(_order))

    def wake(self) -> None:
        self.woken.set()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self.woken.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), seconds)


class TaskReadyNotifier:
    def __init__(self) -> None:
        self._by_worker: dict[str, Waiter] = {}
        self.closing = False

    @contextlib.contextmanager
    def waiting(self, worker_id: str) -> Iterator[Waiter]:
        """Register the one waiting claim of a worker here; an earlier one of it ends now."""
        earlier = self._by_worker.get(worker_id)
        if earlier is not None:
            earlier.end("superseded by a newer claim of the same worker")
        waiter = Waiter(worker_id)
        if self.closing:
            waiter.end("broker shutting down")
        self._by_worker[worker_id] = waiter
        try:
            yield waiter
        finally:
            if self._by_worker.get(worker_id) is waiter:
                del self._by_worker[worker_id]

    def waiting_types(self) -> set[str]:
        return {t for w in self._by_worker.values() if w.task_types for t in w.task_types}

    def waiters(self) -> int:
        return len(self._by_worker)

    def wake_types(self, counts: dict[str, int] | None) -> int:
        """Wake up to counts[type] waiters per type (None: wake all); how many were woken."""
        woken = 0
        for waiter in sorted(self._by_worker.values(), key=lambda w: w.order):
            if counts is None or waiter.task_types is None:
                waiter.wake()
                woken += 1
                continue
            for task_type in waiter.task_types:
                if counts.get(task_type, 0) > 0:
                    counts[task_type] -= 1
                    waiter.wake()
                    woken += 1
                    break
        return woken

    def wake_every_waiter_of(self, task_types: Iterable[str]) -> int:
        wanted = set(task_types)
        woken = 0
        for waiter in list(self._by_worker.values()):
            if waiter.task_types is None or waiter.task_types & wanted:
                waiter.wake()
                woken += 1
        return woken

    def on_task_ready(self, payload: str) -> None:
        self.wake_types(parse_ready(payload))

    def on_worker_stop(self, worker_id: str) -> None:
        waiter = self._by_worker.get(worker_id)
        if waiter is not None:
            waiter.end("the worker is draining or deregistered")

    def wake_all(self) -> None:
        self.wake_types(None)

    def close(self) -> None:
        """The replica is shutting down: every waiting claim returns now."""
        self.closing = True
        for waiter in list(self._by_worker.values()):
            waiter.end("broker shutting down")


def parse_ready(payload: str) -> dict[str, int] | None:
    """'type n' -> {type: n}; '' (or anything unreadable) -> None: wake all."""
    task_type, _, count = payload.partition(" ")
    if not task_type:
        return None
    try:
        return {task_type: max(1, int(count or 1))}
    except ValueError:
        return None


class ReadyCheck:
    """Service: once per interval, wake waiters whose task types have ready tasks."""

    name = "claim-ready-check"

    def __init__(self, connector: Connector, notifier: TaskReadyNotifier) -> None:
        self._db = connector
        self._notifier = notifier

    async def run_once(self) -> int:
        types = self._notifier.waiting_types()
        if not types:
            return 0
        rows = await self._db.fetch_all("task_types_ready", {"task_types": sorted(types)})
        return self._notifier.wake_every_waiter_of(row["task_type"] for row in rows)
