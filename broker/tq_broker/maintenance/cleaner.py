"""Cleaner: deletes finished tasks (completed, dead_letter, cancelled) past the retention
period, and workers long offline.

The one thing not to break: it deletes in small batches, each its own short statement, so it
never holds many row locks or a long transaction that would pin the vacuum horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

from tq_broker.connector import Connector

RETENTION_SECONDS_DEFAULT = 7 * 24 * 3600.0
BATCH_SIZE_DEFAULT = 1000
MAX_BATCHES_PER_RUN_DEFAULT = 50


@dataclass(frozen=True)
class CleanerConfig:
    retention_seconds: float = RETENTION_SECONDS_DEFAULT
    batch_size: int = BATCH_SIZE_DEFAULT
    max_batches_per_run: int = MAX_BATCHES_PER_RUN_DEFAULT  # the rest waits for the next run


@dataclass(frozen=True)
class CleanResult:
    tasks_deleted: int
    workers_deleted: int


class Cleaner:
    name = "cleaner"

    def __init__(self, connector: Connector, config: CleanerConfig) -> None:
        self._db = connector
        self.config = config

    async def run_once(self) -> CleanResult:
        params = {
            "retention_seconds": self.config.retention_seconds,
            "batch_size": self.config.batch_size,
        }
        deleted = 0
        for _ in range(self.config.max_batches_per_run):
            n = await self._db.execute("task_delete_finished", params)
            deleted += n
            if n < self.config.batch_size:
                break
        workers = await self._db.execute("worker_delete_offline", params)
        return CleanResult(tasks_deleted=deleted, workers_deleted=workers)
