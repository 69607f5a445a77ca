"""Runs the maintenance services, each on its own interval, only while this replica leads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from tq_broker.errors import StoreUnavailable
from tq_broker.leader import Elector

log = logging.getLogger(__name__)


class MaintenanceService(Protocol):
    name: str

    async def run_once(self) -> object: ...


@dataclass
class Scheduled:
    service: MaintenanceService
    interval_seconds: float
    next_run: float = 0.0


class MaintenanceRunner:
    def __init__(self, elector: Elector, services: list[Scheduled], tick_seconds: float = 0.5):
        self._elector = elector
        self._services = services
        self._tick = tick_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._elector.is_leader:
                await self._run_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._tick)

    async def _run_due(self) -> None:
        now = time.monotonic()
        for scheduled in self._services:
            if now < scheduled.next_run or not self._elector.is_leader:
                continue
            scheduled.next_run = now + scheduled.interval_seconds
            try:
                result = await scheduled.service.run_once()
                log.debug("%s: %s", scheduled.service.name, result)
            except StoreUnavailable as exc:
                log.warning("%s skipped: %s", scheduled.service.name, exc)
