"""Wakes long-polling claims the moment a task becomes ready (PostgreSQL LISTEN/NOTIFY).

One LISTEN connection per broker replica; every waiting claim shares it. Notifications only
shorten waits: a claim also retries on a slow fallback poll, so a lost notification (or a
PostgreSQL restart) delays a task by at most that interval, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tq_broker.connector import ConnectorConfig, DedicatedSession, connect_dedicated
from tq_broker.errors import StoreUnavailable

log = logging.getLogger(__name__)

CHANNEL = "tq_task_ready"
RECONNECT_DELAY_SECONDS = 1.0


class TaskReadyNotifier:
    def __init__(self, config: ConnectorConfig) -> None:
        self._config = config
        self._event = asyncio.Event()
        self.closing = False

    def close(self) -> None:
        """The replica is shutting down: wake every waiting claim so that it returns now."""
        self.closing = True
        self._broadcast()

    def ticket(self) -> asyncio.Event:
        """Take before looking for work; it is set by the next notification after that."""
        return self._event

    def _broadcast(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            session: DedicatedSession | None = None
            try:
                session = await connect_dedicated(
                    self._config, application_name="tq-broker-listener"
                )
                await session.listen(CHANNEL)
                self._broadcast()  # anything may have happened while we were not listening
                while not stop.is_set():
                    if await session.wait_for_notify(timeout_seconds=1.0):
                        self._broadcast()
            except (StoreUnavailable, OSError) as exc:
                log.warning("task-ready listener disconnected: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_DELAY_SECONDS)
            finally:
                if session is not None:
                    with contextlib.suppress(Exception):
                        await session.close()
