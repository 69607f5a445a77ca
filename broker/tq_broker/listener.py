"""This replica's one LISTEN connection: PostgreSQL notifications, by channel, to their handlers.

Channels: `tq_task_ready` (tasks became claimable), `tq_worker_stop` (a worker drains or leaves)
and `tq_task_events` (status changes for live subscribers). A service: each `run_once` connects
if needed and hands on what arrives within a short wait; a lost connection raises, and the
service runner reconnects after its backoff.

The one thing not to break: notifications sent while we were not listening are lost, so every
(re)connect calls `on_connect` handlers, which must assume that anything may have happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from tq_broker.connector import ConnectorConfig, DedicatedSession, connect_dedicated

log = logging.getLogger(__name__)

WAIT_SECONDS = 0.5
BATCH_MAX = 1000

Handler = Callable[[str], None]


class Listener:
    name = "listener"

    def __init__(
        self,
        config: ConnectorConfig,
        handlers: Mapping[str, Handler],
        on_connect: Sequence[Callable[[], None]] = (),
        own_sender: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._config = config
        self._handlers = dict(handlers)
        self._on_connect = list(on_connect)
        # The backend pid of this replica's own notifying session (its ReadyAnnouncer), whose
        # notifications were acted on here before they were sent: they are dropped.
        self._own_sender = own_sender
        self._session: DedicatedSession | None = None
        self.listening = asyncio.Event()  # set while every channel is LISTENed

    async def run_once(self) -> None:
        try:
            if self._session is None or self._session.closed:
                await self._connect()
            assert self._session is not None
            notifications = self._session.notifications(WAIT_SECONDS, BATCH_MAX)
            async for channel, payload, sender in notifications:
                handler = self._handlers.get(channel)
                if handler is not None and sender != self._own_sender():
                    handler(payload)
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> None:
        self._session = await connect_dedicated(self._config, application_name="tq-listener")
        for channel in self._handlers:
            await self._session.listen(channel)
        self.listening.set()
        log.debug("listening on %s", ", ".join(self._handlers))
        for hook in self._on_connect:
            hook()

    async def close(self) -> None:
        self.listening.clear()
        session, self._session = self._session, None
        if session is not None:
            try:
                await session.close()
            except Exception:
                log.debug("closing the listener's session failed", exc_info=True)
