"""Live task status changes for WebSocket and gRPC subscribers, fanned out across replicas.

Publishing: every committed state change passes through `EventPublisher.publish_rows`, which
only appends it to a buffer. The publisher service sends what gathered in one statement that
NOTIFYs `tq_task_events` (many events per notification) only if some replica has a live
subscriber (a row in `tq_event_listeners`). Without subscribers nothing is sent; the statement
still runs, at most every `QUIET_COALESCE_SECONDS` while there is traffic.

Receiving: the replica's listener hands each notification to `EventHub.dispatch`, which queues
each event for the local subscribers whose filters match. Subscribers to given task ids (a
`?wait=` request, a stream filtered by `task_ids`) are found by id, so thousands of them cost
an event a dictionary lookup, not a scan. A subscriber that does not keep up is dropped, never
buffered without bound.

The guarantee (the one thing not to break): a subscriber is told it is live (`subscribed`, or a
gRPC stream's initial metadata) only after its replica's registration row has committed and its
listener is LISTENing. The publisher decides whether to send *after* the changes committed, in
the same statement that sends them; so every change that commits after a subscriber was told it
is live reaches it, whichever replica made the change. Earlier changes are not replayed, and a
subscriber that falls a whole queue behind is dropped: the database is the truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tq_broker.connector import Connector
from tq_broker.services import pause_until

log = logging.getLogger(__name__)

CHANNEL = "tq_task_events"
NOTIFY_PAYLOAD_MAX = 7500  # PostgreSQL refuses payloads of 8000 bytes or more
LISTENER_TTL_SECONDS = 10.0
LISTENER_RENEW_SECONDS = 3.0
SUBSCRIBER_QUEUE_MAX = 1000
COALESCE_SECONDS = 0.005  # while someone listens: gather this long, then send
QUIET_COALESCE_SECONDS = 0.1  # while nobody did at the last send: one statement per this long
IDLE_WAIT_SECONDS = 0.5
REGISTRATION_CHECK_SECONDS = 0.05
# Kept registered this long after the last subscriber left: short-lived subscribers (a `?wait=`
# per submit) neither churn the row nor find publishers in their slow, nobody-listens pace.
UNREGISTER_AFTER_IDLE_SECONDS = 5.0
BUFFER_MAX = 100_000  # events waiting to be sent; beyond it they are dropped (a lossy feed)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TaskEvent:
    task_id: str
    task_type: str
    status: str
    updated_at: str  # RFC 3339, UTC
    # What task control adds (None when absent): the handler's last progress (fraction,
    # message, updated_at) and an abort (aborted_at, aborted_by).
    progress: tuple[float, str | None, str] | None = None
    aborted: tuple[str, str] | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskEvent:
        progress = aborted = None
        if row.get("progress_fraction") is not None:
            progress = (
                float(row["progress_fraction"]),
                row.get("progress_message"),
                _rfc3339(row["progress_updated_at"]),
            )
        if row.get("aborted_at") is not None:
            aborted = (_rfc3339(row["aborted_at"]), str(row.get("aborted_by")))
        return cls(
            str(row["task_id"]),
            row["task_type"],
            row["status"],
            _rfc3339(row["updated_at"]),
            progress,
            aborted,
        )

    def wire(self) -> list[Any]:
        """[id, type, status, updated_at], plus {"progress", "aborted"} when either is set."""
        item: list[Any] = [self.task_id, self.task_type, self.status, self.updated_at]
        extra = {
            name: value
            for name, value in (("progress", self.progress), ("aborted", self.aborted))
            if value is not None
        }
        return [*item, extra] if extra else item

    @classmethod
    def from_wire(cls, item: list[Any]) -> TaskEvent:
        extra = item[4] if len(item) > 4 and isinstance(item[4], dict) else {}
        progress = extra.get("progress")
        aborted = extra.get("aborted")
        task_id, task_type, status, updated_at = map(str, item[:4])
        return cls(
            task_id,
            task_type,
            status,
            updated_at,
            progress=(float(progress[0]), progress[1], str(progress[2])) if progress else None,
            aborted=(str(aborted[0]), str(aborted[1])) if aborted else None,
        )


def encode_events(events: Iterable[TaskEvent]) -> list[str]:
    """JSON arrays of `TaskEvent.wire()` items, each under the NOTIFY size limit."""
    payloads: list[str] = []
    chunk: list[str] = []
    size = 2
    for event in events:
        item = json.dumps(event.wire())
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
        return [TaskEvent.from_wire(item) for item in json.loads(payload)]
    except (ValueError, TypeError, IndexError, KeyError):
        log.warning("ignoring a malformed event notification")
        return []


class EventPublisher:
    """Every committed status change passes through `publish_rows`: the one place that sees
    them all, so it also counts them for the metrics (`on_change`).

    Requests only append to a buffer; the service (`run_once`) sends what gathered, so a
    subscriber costs the request path no extra round trip.
    """

    name = "event-publisher"

    def __init__(
        self,
        connector: Connector,
        on_change: Callable[[list[Mapping[str, Any]]], None] | None = None,
    ) -> None:
        self._db = connector
        self._on_change = on_change
        self.listening = False  # as of the last send
        self._buffer: list[TaskEvent] = []
        self._pending = asyncio.Event()

    async def publish_rows(
        self, rows: Iterable[Mapping[str, Any]], transitions: bool = True
    ) -> None:
        """Queue the changes a committed statement returned (task_id, task_type, status,
        updated_at). `transitions=False`: the status did not change (progress, an abort
        request), so the transition counters do not count them."""
        rows = list(rows)
        if not rows:
            return
        if self._on_change is not None and transitions:
            self._on_change(rows)
        if len(self._buffer) < BUFFER_MAX:
            self._buffer.extend(TaskEvent.from_row(r) for r in rows)
        self._pending.set()

    async def run_once(self) -> int:
        """Send the buffered events, many per notification, if anyone listens; how many."""
        await pause_until(self._pending, IDLE_WAIT_SECONDS)
        if not self._pending.is_set():
            return 0
        # Let concurrent requests join the batch; longer while nobody was listening.
        await asyncio.sleep(COALESCE_SECONDS if self.listening else QUIET_COALESCE_SECONDS)
        self._pending.clear()
        events, self._buffer = self._buffer, []
        row = await self._db.fetch_one("event_publish", {"payloads": encode_events(events)})
        self.listening = bool(row and row["listening"])
        return len(events) if self.listening else 0


@dataclass(eq=False)  # identity: each subscription is its own set member
class Subscription:
    task_types: frozenset[str]
    statuses: frozenset[str]
    task_ids: frozenset[str] = frozenset()  # canonical UUID strings; empty: any task
    queue: asyncio.Queue[TaskEvent] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
    )
    dropped: bool = False

    def matches(self, event: TaskEvent) -> bool:
        return (
            (not self.task_types or event.task_type in self.task_types)
            and (not self.statuses or event.status in self.statuses)
            and (not self.task_ids or event.task_id in self.task_ids)
        )


class EventHub:
    """This replica's local subscribers, and its row in `tq_event_listeners` while it has any.

    Keeping that row is a service (`run_once`, every `REGISTRATION_CHECK_SECONDS`); the
    replica's `Listener` calls `dispatch` with what arrives on `CHANNEL`.
    """

    name = "event-registration"

    def __init__(self, connector: Connector) -> None:
        self._db = connector
        self.replica_id = f"replica-{uuid.uuid4()}"
        self._subscribers: set[Subscription] = set()  # all of them
        self._any_task: set[Subscription] = set()  # those without a task_ids filter
        self._by_task: dict[str, set[Subscription]] = {}  # the others, by each of their ids
        self._registered_event = asyncio.Event()
        self._renew_at = 0.0
        self._last_subscriber_at = 0.0
        # Set while the LISTEN is up: the replica's Listener's own event, once it is built.
        self.listening = asyncio.Event()

    async def registered(self, within_seconds: float = 5.0) -> bool:
        """Wait until changes on any replica reach this one's subscribers: the registration
        row has committed and the listener LISTENs. False if that took too long."""
        try:
            async with asyncio.timeout(within_seconds):
                await self._registered_event.wait()
                await self.listening.wait()
        except TimeoutError:
            return False
        return True

    def subscribe(
        self,
        task_types: Iterable[str],
        statuses: Iterable[str],
        task_ids: Iterable[str] = (),
    ) -> Subscription:
        subscription = Subscription(frozenset(task_types), frozenset(statuses), frozenset(task_ids))
        self._subscribers.add(subscription)
        if not subscription.task_ids:
            self._any_task.add(subscription)
        for task_id in subscription.task_ids:
            self._by_task.setdefault(task_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._last_subscriber_at = time.monotonic()
        self._subscribers.discard(subscription)
        self._any_task.discard(subscription)
        for task_id in subscription.task_ids:
            subscribers = self._by_task.get(task_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._by_task[task_id]

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def dispatch(self, events: Iterable[TaskEvent]) -> None:
        for event in events:
            by_id = self._by_task.get(event.task_id)
            candidates = [*self._any_task, *by_id] if by_id else list(self._any_task)
            for sub in candidates:
                if sub.dropped or not sub.matches(event):
                    continue
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    sub.dropped = True  # the consumer sees this and closes its stream
                    self.unsubscribe(sub)

    def on_notification(self, payload: str) -> None:
        self.dispatch(decode_events(payload))

    async def run_once(self) -> bool:
        """Register while there are subscribers (renewed well within the TTL); unregister once
        the last one left UNREGISTER_AFTER_IDLE_SECONDS ago. Whether this replica is registered
        now."""
        registered = self._registered_event.is_set()
        now = time.monotonic()
        lingering = now - self._last_subscriber_at < UNREGISTER_AFTER_IDLE_SECONDS
        if (self._subscribers or (registered and lingering)) and (
            not registered or now >= self._renew_at
        ):
            await self._db.execute(
                "event_listener_register",
                {"replica_id": self.replica_id, "ttl_seconds": LISTENER_TTL_SECONDS},
            )
            self._renew_at = time.monotonic() + LISTENER_RENEW_SECONDS
            self._registered_event.set()
        elif not self._subscribers and registered and not lingering:
            await self.close()
        return self._registered_event.is_set()

    async def close(self) -> None:
        """Unregister, if registered (also the service's close at shutdown)."""
        if self._registered_event.is_set():
            self._registered_event.clear()
            await self._db.execute("event_listener_unregister", {"replica_id": self.replica_id})
