"""GET /api/v1/tasks/{task_id}?wait=<seconds>: answer once the task is finished, or the time is up.

A waiter subscribes to its task's events on the replica's `EventHub` (the LISTEN fan-out that
serves WebSocket and gRPC streams), waits until that subscription is live, reads the task once,
and then sleeps on its queue. It reads the task again only when an event says the task reached
a terminal status, or when its time is up. The one thing not to break: a waiter never holds a
database connection while it waits, and never polls; each read borrows a pooled connection for
one statement. Subscribing before the first read means a completion that commits in between
still wakes it (see events.py for why a live subscription misses nothing).

Waiters per replica are capped (`max_task_waiters`): past it the request is refused at once
(503 with Retry-After), never queued. Shutdown wakes every waiter to answer what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from uuid import UUID

from tq_broker.errors import BrokerError
from tq_broker.events import EventHub, TaskEvent
from tq_broker.task_store import TaskStore
from tq_client.models import TERMINAL_STATUSES, TaskDetail

TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
MAX_WAITERS_DEFAULT = 1000  # half of max_connections: waiters never crowd out the rest
REGISTER_WITHIN_SECONDS = 5.0  # the event feed must be live within this, else 503


class TooManyWaiters(BrokerError):
    """This replica has as many waiting requests as it may (503; retry, maybe elsewhere)."""


class EventFeedUnavailable(BrokerError):
    """The replica could not subscribe to task events in time (503)."""


class TaskWaits:
    """This replica's `?wait=` requests."""

    def __init__(self, store: TaskStore, hub: EventHub, max_waiters: int) -> None:
        self._store = store
        self._hub = hub
        self.max_waiters = max_waiters
        self.active = 0
        self._closing = asyncio.Event()
        self._recheck = asyncio.Event()

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self.active >= self.max_waiters:
            raise TooManyWaiters(
                f"this broker replica already has {self.max_waiters} requests waiting for "
                "tasks; retry shortly"
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def task_get_when_finished(
        self, task_id: UUID, wait_seconds: float, gone: asyncio.Event | None = None
    ) -> TaskDetail:
        """The task once it is terminal, or as it is when `wait_seconds` pass, the broker
        stops, or `gone` is set (the client hung up). NotFound for an unknown task."""
        if wait_seconds <= 0:
            return await self._store.task_get(task_id)
        deadline = time.monotonic() + wait_seconds
        with self._slot():
            subscription = self._hub.subscribe((), (), [str(task_id)])
            try:
                if not await self._hub.registered(REGISTER_WITHIN_SECONDS):
                    raise EventFeedUnavailable("task events are unavailable; retry shortly")
                while True:
                    recheck = self._recheck  # a reconnect after this read makes us read again
                    task = await self._store.task_get(task_id)  # live: nothing missed
                    if task.status.value in TERMINAL or subscription.dropped:
                        return task
                    stoppers = [self._closing, recheck] + ([gone] if gone is not None else [])
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or any(e.is_set() for e in stoppers if e is not recheck):
                        return task
                    woken = await self._next_terminal(subscription.queue, remaining, stoppers)
                    if not (woken or recheck.is_set()):
                        return await self._store.task_get(task_id)
            finally:
                self._hub.unsubscribe(subscription)

    async def _next_terminal(
        self, queue: asyncio.Queue[TaskEvent], within: float, stoppers: list[asyncio.Event]
    ) -> bool:
        """Wait for an event that says the task finished: True. False when the time is up or
        one of `stoppers` is set first."""
        waits = [asyncio.ensure_future(e.wait()) for e in stoppers]
        deadline = time.monotonic() + within
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                getter = asyncio.ensure_future(queue.get())
                try:
                    done, _ = await asyncio.wait(
                        [getter, *waits], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter not in done:
                    return False
                if getter.result().status in TERMINAL:
                    return True
            return False
        finally:
            for wait in waits:
                wait.cancel()

    def recheck_all(self) -> None:
        """The listener (re)connected: events may have been lost meanwhile, so every waiter
        reads its task once more."""
        recheck, self._recheck = self._recheck, asyncio.Event()
        recheck.set()

    def close(self) -> None:
        """Shutdown: every waiter answers what it has now."""
        self._closing.set()
