"""Background work of a broker replica, in one shape (as River's `BaseStartStop`).

A service has a `name` and `run_once()`; a `Schedule` says how long to pause between runs and
whether only the leader runs it. `ServiceRunner` gives every service its own supervised loop
and, at shutdown, stops all of them and calls each one's optional `close()`.

The one thing not to break: a service that raises never ends its loop. The exception is logged
with its traceback, the loop backs off and runs it again; `StoreUnavailable` (the database is
away) is expected and logged as one warning line. Shutdown always reaches every `close()`, so
the caller can always close the pool after `run()` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tq_broker.errors import StoreUnavailable

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS_DEFAULT = 0.5
BACKOFF_CAP_SECONDS_DEFAULT = 30.0
LEADER_POLL_SECONDS_DEFAULT = 0.2  # how soon a new leader starts its leader-only services
CLOSE_TIMEOUT_SECONDS = 5.0


class Service(Protocol):
    @property
    def name(self) -> str: ...

    async def run_once(self) -> object: ...


@runtime_checkable
class Closeable(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Schedule:
    service: Service
    interval_seconds: float  # pause after each run (0: run again at once; run_once waits itself)
    leader_only: bool = False


@dataclass(frozen=True)
class Job:
    """A service made of a name and a coroutine function (and, optionally, one for close)."""

    name: str
    run: Callable[[], Awaitable[object]]
    on_close: Callable[[], Awaitable[object]] | None = None

    async def run_once(self) -> object:
        return await self.run()

    async def close(self) -> None:
        if self.on_close is not None:
            await self.on_close()


def backoff_seconds(failures: int, base: float, cap: float) -> float:
    """Doubling pause after consecutive failures: base, 2·base, 4·base, ... up to cap."""
    return float(min(cap, base * 2 ** max(0, failures - 1)))


class ServiceRunner:
    def __init__(
        self,
        schedules: Sequence[Schedule],
        is_leader: Callable[[], bool] = lambda: False,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS_DEFAULT,
        backoff_cap_seconds: float = BACKOFF_CAP_SECONDS_DEFAULT,
        leader_poll_seconds: float = LEADER_POLL_SECONDS_DEFAULT,
    ) -> None:
        self._schedules = list(schedules)
        self._is_leader = is_leader
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._leader_poll = leader_poll_seconds
        self.failures: dict[str, int] = {s.service.name: 0 for s in self._schedules}

    async def run(self, stop: asyncio.Event) -> None:
        """Run every service until `stop` is set; then close them, last started first."""
        loops = [
            asyncio.create_task(self._supervise(s, stop), name=f"service:{s.service.name}")
            for s in self._schedules
        ]
        try:
            await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for schedule in reversed(self._schedules):
                await self._close(schedule.service)

    async def _supervise(self, schedule: Schedule, stop: asyncio.Event) -> None:
        name = schedule.service.name
        while not stop.is_set():
            if schedule.leader_only and not self._is_leader():
                await pause_until(stop, self._leader_poll)
                continue
            try:
                result = await schedule.service.run_once()
            except StoreUnavailable as exc:
                pause = self._failed(name)
                log.warning("%s: %s; again in %.1fs", name, exc, pause)
            except Exception:
                pause = self._failed(name)
                log.exception("%s failed; again in %.1fs", name, pause)
            else:
                self.failures[name] = 0
                pause = schedule.interval_seconds
                if result is not None:
                    log.debug("%s: %s", name, result)
            await pause_until(stop, pause)

    def _failed(self, name: str) -> float:
        self.failures[name] += 1
        return backoff_seconds(self.failures[name], self._backoff_base, self._backoff_cap)

    async def _close(self, service: Service) -> None:
        if not isinstance(service, Closeable):
            return
        try:
            await asyncio.wait_for(service.close(), CLOSE_TIMEOUT_SECONDS)
        except Exception:
            log.exception("closing %s failed", service.name)


async def pause_until(event: asyncio.Event, seconds: float) -> None:
    """Return once `event` is set or `seconds` have passed, whichever is first (0: just let
    others run). Also how a service's `run_once` waits for work that may not come."""
    if seconds <= 0:
        await asyncio.sleep(0)  # let others run between back-to-back runs
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
