"""Leader election: exactly one broker replica at a time runs the maintenance sweeps.

`AdvisoryLockElector` holds a PostgreSQL session-level advisory lock on a dedicated connection.
That session has an `idle_session_timeout` a few check intervals long, so a leader that stops
talking (killed, paused with SIGSTOP, cut off) loses its session and with it the lock, and
another replica takes over within `lease_seconds` + one check interval.

The one thing not to break: leadership is a hint, not a fence. A resumed leader may believe it
leads until its next check fails, so every sweep must be safe to run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from tq_broker.connector import ConnectorConfig, DedicatedSession, connect_dedicated
from tq_broker.errors import StoreUnavailable
from tq_kube.lease import KubernetesLeaseElector

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS_DEFAULT = 1.0
LEASE_SECONDS_DEFAULT = 5.0


class Elector(Protocol):
    """A service (see `services.py`): `run_once` is one election round, `close` resigns."""

    @property
    def name(self) -> str: ...

    @property
    def is_leader(self) -> bool: ...

    async def run_once(self) -> None: ...

    async def close(self) -> None: ...


class KubernetesLeaseService:
    """The Kubernetes Lease elector of `tq_client` in the shape of a broker service."""

    name = "elector"

    def __init__(self, elector: KubernetesLeaseElector) -> None:
        self._elector = elector

    @property
    def is_leader(self) -> bool:
        return self._elector.is_leader

    async def run_once(self) -> None:
        await self._elector.step()

    async def close(self) -> None:
        await self._elector.resign()


class AdvisoryLockElector:
    name = "elector"

    def __init__(
        self,
        config: ConnectorConfig,
        check_interval_seconds: float = CHECK_INTERVAL_SECONDS_DEFAULT,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
    ) -> None:
        self._config = config
        self._check_interval = check_interval_seconds
        self._lease_ms = int(lease_seconds * 1000)
        self._session: DedicatedSession | None = None
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def check_interval_seconds(self) -> float:
        return self._check_interval

    async def run_once(self) -> None:
        try:
            if self._session is None or self._session.closed:
                self._set_leader(False)
                self._session = await asyncio.wait_for(
                    connect_dedicated(
                        self._config,
                        f"-c idle_session_timeout={self._lease_ms}",
                        application_name="tq-broker-elector",
                    ),
                    self._config.connect_timeout_seconds,
                )
            name = "leader_check" if self._leader else "leader_try_lock"
            row = await asyncio.wait_for(self._session.fetch_one(name), self._lease_ms / 1000)
            self._set_leader(bool(row and (row.get("alive") or row.get("acquired"))))
        except (StoreUnavailable, TimeoutError, OSError) as exc:
            if self._leader:
                log.warning("leadership lost: %s", exc)
            self._set_leader(False)
            await self._drop_session()

    def _set_leader(self, leader: bool) -> None:
        if leader != self._leader:
            log.info("this replica %s the leader", "is now" if leader else "is no longer")
        self._leader = leader

    async def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                await session.close()
            except Exception:
                log.debug("closing elector session failed", exc_info=True)

    async def close(self) -> None:
        """Resign: unlock on a graceful stop, so a standby takes over at once."""
        if self._leader and self._session is not None and not self._session.closed:
            with contextlib.suppress(StoreUnavailable, TimeoutError, OSError):
                await asyncio.wait_for(self._session.fetch_one("leader_unlock"), 2)
        self._set_leader(False)
        await self._drop_session()
