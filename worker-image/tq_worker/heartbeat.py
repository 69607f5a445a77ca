"""The heartbeat loop: liveness, load (CPU %, RSS MB), renewal of every lease held, the
handlers' latest progress out and the broker's aborts in.

It beats on a fixed schedule on its own connection pool, whatever the handlers are doing. The
one thing not to break: `abandon` in an answer refers to the leases *sent* in that request, so
it is applied by (task_id, lease_token) — a task re-claimed since then is not touched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psutil

from tq_client.protocol import PROGRESS_PER_HEARTBEAT_MAX, HeartbeatRequest, ProgressReport
from tq_worker.broker_client import BrokerClient, BrokerRejected, BrokerUnavailable, WorkerGone
from tq_worker.config import HELD_MAX
from tq_worker.ledger import Held, LeaseKey, Ledger
from tq_worker.progress import ProgressSlot, Reported

log = logging.getLogger(__name__)
BYTES_PER_MB = 1024 * 1024


class LoadSampler:
    """CPU % of this process since the previous sample (first is 0), and its RSS in MB."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    def sample(self) -> tuple[float, float]:
        try:
            cpu = self._process.cpu_percent(None)
            rss_mb = self._process.memory_info().rss / BYTES_PER_MB
        except psutil.Error:
            return 0.0, 0.0
        return round(cpu, 1), round(rss_mb, 1)


@dataclass
class Heartbeater:
    client: BrokerClient
    ledger: Ledger
    interval: Callable[[], float]
    abandon: Callable[[list[LeaseKey]], None]
    # Called with the registration generation the failed beat was sent under.
    reregister: Callable[[int], Awaitable[None]]
    generation: Callable[[], int]
    sampler: LoadSampler | None = None
    # Called with the leases (sent in that beat) whose tasks the broker says to abort.
    abort: Callable[[list[LeaseKey]], None] = lambda keys: None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sampler = self.sampler or LoadSampler()
        while True:
            started = loop.time()
            await self.beat_once(sampler)
            await asyncio.sleep(max(0.0, started + self.interval() - loop.time()))

    async def beat_once(self, sampler: LoadSampler) -> None:
        held = self.ledger.leases()
        if len(held) > HELD_MAX:
            log.warning("holding %d leases; renewing the first %d", len(held), HELD_MAX)
            held = held[:HELD_MAX]
        cpu, rss_mb = sampler.sample()
        progress = unsent_progress(held)
        request = HeartbeatRequest(
            cpu_usage_percent=cpu,
            memory_usage_mb=rss_mb,
            current_tasks=self.ledger.running_count,
            leases=[entry.lease for entry in held],
            progress=[report for report, _, _ in progress],
        )
        generation = self.generation()
        try:
            answer = await self.client.heartbeat(request)
        except WorkerGone as exc:
            log.warning("broker no longer knows this worker (%s); registering again", exc)
            await self.reregister(generation)
            return
        except (BrokerUnavailable, BrokerRejected) as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        for _, slot, reported in progress:
            slot.mark_sent(reported)
        sent = {entry.task.task_id: entry.task.lease_token for entry in held}
        if answer.abandon:
            keys = [(task_id, sent[task_id]) for task_id in answer.abandon if task_id in sent]
            log.info("broker says abandon %d tasks", len(keys))
            self.abandon(keys)
        if answer.abort:
            self.abort([(task_id, sent[task_id]) for task_id in answer.abort if task_id in sent])


def unsent_progress(held: list[Held]) -> list[tuple[ProgressReport, ProgressSlot, Reported]]:
    """The latest progress of each running handler that the broker has not taken yet, at most
    PROGRESS_PER_HEARTBEAT_MAX of them (the others stay unsent until the next beat)."""
    found: list[tuple[ProgressReport, ProgressSlot, Reported]] = []
    for entry in held:
        if len(found) == PROGRESS_PER_HEARTBEAT_MAX:
            break
        slot = entry.ctx.progress_slot if entry.ctx is not None else None
        reported = slot.unsent() if slot is not None else None
        if slot is not None and reported is not None:
            report = ProgressReport(
                task_id=entry.task.task_id, fraction=reported.fraction, message=reported.message
            )
            found.append((report, slot, reported))
    return found
