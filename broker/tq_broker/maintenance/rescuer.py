"""Rescuer: in-progress tasks whose lease expired or whose hard deadline passed are failed
attempts — retried after a backoff, or dead-lettered when no retries are left; a task asked to
abort is cancelled instead, never retried.

The one thing not to break: the rescue is conditional on the lease token it read, so a
completion that commits first wins, and a second leader running the same sweep rescues nothing
twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from tq_broker.connector import Connector
from tq_broker.events import EventPublisher
from tq_broker.retry_policy import BACKOFF_BASE_SECONDS_DEFAULT, BACKOFF_CAP_SECONDS_DEFAULT
from tq_client.protocol import ABORT_GRACE_SECONDS_DEFAULT

BATCH_SIZE_DEFAULT = 500
DEADLINE_GRACE_SECONDS_DEFAULT = 30.0


@dataclass(frozen=True)
class RescuerConfig:
    # Added to a task's timeout_seconds before the hard deadline catches it: room for the
    # worker's own timeout to fire and its failure report to arrive first.
    deadline_grace_seconds: float = DEADLINE_GRACE_SECONDS_DEFAULT
    backoff_base_seconds: float = BACKOFF_BASE_SECONDS_DEFAULT
    backoff_cap_seconds: float = BACKOFF_CAP_SECONDS_DEFAULT
    batch_size: int = BATCH_SIZE_DEFAULT
    # A task asked to abort whose worker keeps heartbeating but has not reported it within
    # abort_grace_seconds + deadline_grace_seconds is cancelled here.
    abort_grace_seconds: float = ABORT_GRACE_SECONDS_DEFAULT


@dataclass(frozen=True)
class RescueResult:
    retried: int
    dead_lettered: int
    cancelled: int = 0  # asked to abort


class Rescuer:
    name = "rescuer"

    def __init__(self, connector: Connector, config: RescuerConfig, events: EventPublisher) -> None:
        self._db = connector
        self.config = config
        self._events = events

    async def run_once(self) -> RescueResult:
        retried = dead = cancelled = 0
        while True:
            rows = await self._db.fetch_all(
                "task_rescue_expired",
                {
                    "grace_seconds": self.config.deadline_grace_seconds,
                    "abort_limit_seconds": self.config.abort_grace_seconds
                    + self.config.deadline_grace_seconds,
                    "batch_size": self.config.batch_size,
                    "backoff_base_seconds": self.config.backoff_base_seconds,
                    "backoff_cap_seconds": self.config.backoff_cap_seconds,
                },
            )
            await self._events.publish_rows(rows)
            retried += sum(1 for r in rows if r["status"] == "failed")
            cancelled += sum(1 for r in rows if r["status"] == "cancelled")
            dead += sum(1 for r in rows if r["status"] == "dead_letter")
            if len(rows) < self.config.batch_size:
                return RescueResult(retried=retried, dead_lettered=dead, cancelled=cancelled)
