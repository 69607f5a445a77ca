"""Reaper: workers that stopped heartbeating are marked offline.

Their tasks are not touched here: each task's own lease expires and the rescuer takes it, so
a worker that is merely slow to heartbeat loses nothing it still holds a valid lease for.
"""

from __future__ import annotations

from dataclasses import dataclass

from tq_broker.connector import Connector

SILENT_SECONDS_DEFAULT = 30.0


@dataclass(frozen=True)
class ReaperConfig:
    silent_seconds: float = SILENT_SECONDS_DEFAULT  # no heartbeat for this long: offline


@dataclass(frozen=True)
class ReapResult:
    marked_offline: int


class Reaper:
    name = "reaper"

    def __init__(self, connector: Connector, config: ReaperConfig) -> None:
        self._db = connector
        self.config = config

    async def run_once(self) -> ReapResult:
        rows = await self._db.fetch_all(
            "worker_mark_offline", {"silent_seconds": self.config.silent_seconds}
        )
        return ReapResult(marked_offline=len(rows))
