"""Tells waiting claims that new tasks are ready: on this replica at once, in-process; on the
others by one NOTIFY per burst of submits, sent after they committed.

Why not a trigger on the insert (as before migration 0013): a transaction that NOTIFYs holds
PostgreSQL's notify-queue lock from its commit until after its WAL flush, so every submitting
commit waited for the one before it and concurrent submits could not share a WAL flush
(`bench/bench_commit_ceiling.py`: 360 commits/s with a NOTIFY per commit, 2,966 without, 16
sessions). Here the submit's own commit notifies nobody; the announcer's session sends the
NOTIFYs with `synchronous_commit = off` (a notification needs no durability), many task types
and submits in one statement, one statement in flight at a time: what arrives while one is
sent goes in the next.

The one thing not to break: an announcement is made only after its tasks committed (a claim
woken earlier would not see them). A lost one (the replica died between the commit and the
send, the database was away) costs latency, not tasks: `ReadyCheck` wakes every waiter whose
task types have ready tasks once per claim poll interval.

Payloads are 'type n', as the trigger sent them, so replicas of the previous version read them
during a rolling update. A replica's listener drops what its own announcer sent (by the
session's backend pid): its waiters were woken already.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from tq_broker.connector import ConnectorConfig, DedicatedSession, connect_dedicated
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.services import pause_until

log = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 0.5


class ReadyAnnouncer:
    name = "ready-announcer"

    def __init__(self, config: ConnectorConfig, notifier: TaskReadyNotifier) -> None:
        self._config = config
        self._notifier = notifier
        self._counts: collections.Counter[str] = collections.Counter()  # by type, not yet sent
        self._pending = asyncio.Event()
        self._session: DedicatedSession | None = None
        self.backend_pid: int | None = None  # of the session that sends, while connected

    def tasks_inserted(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Announce the committed rows that are ready now (`ready`; a scheduled `run_at` in
        the future wakes nobody yet)."""
        counts = collections.Counter(row["task_type"] for row in rows if row.get("ready", True))
        if not counts:
            return
        self._notifier.wake_types(dict(counts))
        self._counts.update(counts)
        self._pending.set()

    async def run_once(self) -> int:
        """Send what gathered, one statement; how many task types it named."""
        await pause_until(self._pending, IDLE_WAIT_SECONDS)
        if not self._pending.is_set():
            return 0
        return await self._send()

    async def _send(self) -> int:
        self._pending.clear()
        counts, self._counts = self._counts, collections.Counter()
        try:
            if self._session is None or self._session.closed:
                self._session = await connect_dedicated(
                    self._config, "-c synchronous_commit=off", application_name="tq-announcer"
                )
                self.backend_pid = self._session.backend_pid
            payloads = [f"{task_type} {count}" for task_type, count in counts.items()]
            await self._session.fetch_one("tasks_announce_ready", {"payloads": payloads})
        except BaseException:
            self._counts.update(counts)  # sent with the next statement instead
            self._pending.set()
            await self._disconnect()
            raise
        return len(counts)

    async def close(self) -> None:
        """At shutdown: send what is still waiting (best effort), then disconnect."""
        try:
            if self._counts:
                await self._send()
        except Exception:
            log.debug("the last announcements were not sent", exc_info=True)
        finally:
            await self._disconnect()

    async def _disconnect(self) -> None:
        session, self._session = self._session, None
        self.backend_pid = None
        if session is not None:
            try:
                await session.close()
            except Exception:
                log.debug("closing the announcer's session failed", exc_info=True)
