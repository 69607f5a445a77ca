"""Live task status changes for WebSocket and gRPC subscribers, fanned out across replicas.

Publishing: after a state change commits, the replica that made it NOTIFYs the changed rows on
`tq_task_events`, many events per notification. It does so only while some replica has a live
subscriber (the `tq_event_listeners` table, checked at most once a second), so without
subscribers the hot path pays nothing.

Receiving: every replica LISTENs and hands each event to its local subscribers whose filters
match. A subscriber that does not keep up is dropped, never buffered without bound.

The one thing not to break: events are a live feed, best effort and after the fact: a
subscriber may miss events (dropped, or subscribed within the last second); the database is
the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tq_broker.connector import Connector, ConnectorConfig, DedicatedSession, connect_dedicated
from tq_broker.errors import StoreUnavailable

log = logging.getLogger(__name__)

CHANNEL = "tq_task_events"
NOTIFY_PAYLOAD_MAX = 7500  # PostgreSQL refuses payloads of 8000 bytes or more
LISTENER_TTL_SECONDS = 10.0
LISTENER_RENEW_SECONDS = 3.0
LISTENING_CHECK_SECONDS = 1.0
SUBSCRIBER_QUEUE_MAX = 1000
COALESCE_SECONDS = 0.005
BUFFER_MAX = 100_000  # events waiting to be sent; beyond it they are dropped (a lossy feed)


@dataclass(frozen=True)
class TaskEvent:
    task_id: str
    task_type: str
    status: str
    updated_at: str  # RFC 3339, UTC

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskEvent:
        updated: datetime = row["updated_at"]
        return cls(
            str(row["task_id"]),
            row["task_type"],
            row["status"],
            updated.isoformat().replace("+00:00", "Z"),
        )


def encode_events(events: Iterable[TaskEvent]) -> list[str]:
    """JSON arrays of [id, type, status, updated_at], each under the NOTIFY size limit."""
    payloads: list[str] = []
    chunk: list[str] = []
    size = 2
    for event in events:
        item = json.dumps([event.task_id, event.task_type, event.status, event.updated_at])
        if chunk and size + len(item) + 1 > NOTIFY_PAYLOAD_MAX:
            payloads.append("[" + ",".join(chunk) + "]")
            chunk, size = [], 2
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        payloads.append("[" + ",".join(chunk) + "]")
    return payloads


def decode_events(payload: str) -> list[TaskEvent]:
    try:
        return [TaskEvent(*map(str, item)) for item in json.loads(payload)]
    except (ValueError, TypeError):
        log.warning("ignoring a malformed event notification")
        return []


class EventPublisher:
    """Every committed status change passes through `publish_rows`: the one place that sees
    them all, so it also counts them for the metrics (`on_change`).

    Requests only append to a buffer; `run` sends what gathered every `COALESCE_SECONDS` in one
    statement, so a subscriber costs the request path no extra round trip.
    """

    def __init__(
        self,
        connector: Connector,
        on_change: Callable[[list[Mapping[str, Any]]], None] | None = None,
    ) -> None:
        self._db = connector
        self._on_change = on_change
        self._listening = False
        self._checked_at = float("-inf")
        self._buffer: list[TaskEvent] = []
        self._pending = asyncio.Event()

    async def _anyone_listening(self) -> bool:
        if time.monotonic() - self._checked_at > LISTENING_CHECK_SECONDS:
            self._checked_at = time.monotonic()
            row = await self._db.fetch_one("event_listeners_exist")
            self._listening = bool(row and row["listening"])
        return self._listening

    async def publish_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue the changes a statement returned (task_id, task_type, status, updated_at)."""
        rows = list(rows)
        if not rows:
            return
        if self._on_change is not None:
            self._on_change(rows)
        try:
            if not await self._anyone_listening():
                return
        except StoreUnavailable as exc:  # the change itself is committed; the feed is lossy
            log.debug("event publish skipped: %s", exc)
            return
        if len(self._buffer) < BUFFER_MAX:
            self._buffer.extend(TaskEvent.from_row(r) for r in rows)
        self._pending.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Background: send the buffered events, many per notification."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pending.wait(), 0.5)
            if not self._pending.is_set():
                continue
            await asyncio.sleep(COALESCE_SECONDS)  # let concurrent requests join the batch
            self._pending.clear()
            events, self._buffer = self._buffer, []
            try:
                await self._db.execute("event_publish", {"payloads": encode_events(events)})
            except StoreUnavailable as exc:
                log.debug("event publish skipped: %s", exc)


@dataclass(eq=False)  # identity: each subscription is its own set member
class Subscription:
    task_types: frozenset[str]
    statuses: frozenset[str]
    queue: asyncio.Queue[TaskEvent] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
    )
    dropped: bool = False

    def matches(self, event: TaskEvent) -> bool:
        return (not self.task_types or event.task_type in self.task_types) and (
            not self.statuses or event.status in self.statuses
        )


class EventHub:
    """This replica's LISTEN connection and its local subscribers."""

    def __init__(self, config: ConnectorConfig, connector: Connector) -> None:
        self._config = config
        self._db = connector
        self.replica_id = f"replica-{uuid.uuid4()}"
        self._subscribers: set[Subscription] = set()
        self._registered = False
        self._registered_event = asyncio.Event()

    async def registered(self, within_seconds: float = 5.0) -> None:
        """Wait until other replicas can see that this one has subscribers (bounded)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._registered_event.wait(), within_seconds)

    def subscribe(self, task_types: Iterable[str], statuses: Iterable[str]) -> Subscription:
        subscription = Subscription(frozenset(task_types), frozenset(statuses))
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def dispatch(self, events: Iterable[TaskEvent]) -> None:
        for event in events:
            for sub in list(self._subscribers):
                if sub.dropped or not sub.matches(event):
                    continue
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.dropped = True  # the consumer sees this and closes its stream
                    self._subscribers.discard(sub)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self._listen(stop), self._keep_registered(stop))

    async def _listen(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            session: DedicatedSession | None = None
            try:
                session = await connect_dedicated(self._config, application_name="tq-events")
                await session.listen(CHANNEL)
                while not stop.is_set():
                    for payload in await session.notifications(timeout_seconds=0.5):
                        self.dispatch(decode_events(payload))
            except (StoreUnavailable, OSError) as exc:
                log.warning("event listener disconnected: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            finally:
                if session is not None:
                    with contextlib.suppress(Exception):
                        await session.close()

    async def _keep_registered(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self._subscribers:
                    await self._db.execute(
                        "event_listener_register",
                        {"replica_id": self.replica_id, "ttl_seconds": LISTENER_TTL_SECONDS},
                    )
                    self._registered = True
                    self._registered_event.set()
                elif self._registered:
                    await self._db.execute(
                        "event_listener_unregister", {"replica_id": self.replica_id}
                    )
                    self._registered = False
                    self._registered_event.clear()
            except StoreUnavailable as exc:
                log.debug("event listener registration skipped: %s", exc)
            # Renew often, and promptly after the first subscriber arrives.
            deadline = time.monotonic() + LISTENER_RENEW_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                if self._subscribers and not self._registered:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
        if self._registered:
            with contextlib.suppress(StoreUnavailable):
                await self._db.execute("event_listener_unregister", {"replica_id": self.replica_id})
