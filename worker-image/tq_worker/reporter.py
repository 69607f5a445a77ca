"""Batched reporting of outcomes: everything finished since the last request goes in the next.

There is no timer: with nothing in flight an outcome is sent at once; while a request is in
flight, new outcomes gather and go together when it returns. The one thing not to break: an
outcome stays buffered (and its lease heartbeated, via the ledger) until the broker has answered
for it — a broker that is down delays results, it never loses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from uuid import UUID

from tq_client.protocol import BATCH_MAX, CompletedTask, FailedTask, LeaseOutcome
from tq_worker.backoff import Backoff
from tq_worker.broker_client import (
    BrokerClient,
    BrokerRejected,
    BrokerUnavailable,
    retry_delay,
)
from tq_worker.execution import Outcome
from tq_worker.ledger import LeaseKey, Ledger

log = logging.getLogger(__name__)
OutcomeT = TypeVar("OutcomeT", CompletedTask, FailedTask)


class Reporter:
    def __init__(self, client: BrokerClient, ledger: Ledger, backoff: Backoff | None = None):
        self._client = client
        self._ledger = ledger
        self._backoff = backoff or Backoff()
        self._pending: dict[UUID, Outcome] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.sent_batches = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def put(self, outcome: Outcome) -> None:
        self._pending[outcome.task_id] = outcome
        self._idle.clear()
        self._wake.set()

    def discard(self, task_id: UUID, lease_token: UUID) -> None:
        """Never report this outcome (its lease was abandoned)."""
        outcome = self._pending.get(task_id)
        if outcome is not None and outcome.lease_token == lease_token:
            del self._pending[task_id]

    def discard_all(self) -> None:
        self._pending.clear()

    async def flush(self, within_seconds: float) -> bool:
        """Wait until everything buffered has been answered for; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), within_seconds)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                unavailable = await self._send_once()
                if unavailable is not None:
                    await asyncio.sleep(retry_delay(unavailable, self._backoff))
            self._idle.set()

    async def _send_once(self) -> BrokerUnavailable | None:
        """One complete batch and one fail batch; the error if the broker could not be reached."""
        outcomes = list(self._pending.values())
        completes = [o for o in outcomes if isinstance(o, CompletedTask)][:BATCH_MAX]
        fails = [o for o in outcomes if isinstance(o, FailedTask)][:BATCH_MAX]
        unavailable = None
        if completes:
            unavailable = await self._send(self._client.complete, completes)
        if fails:
            unavailable = await self._send(self._client.fail, fails) or unavailable
        if unavailable is None:
            self._backoff.reset()
        return unavailable

    async def _send(
        self, send: Callable[[Sequence[OutcomeT]], Awaitable[LeaseOutcome]], batch: list[OutcomeT]
    ) -> BrokerUnavailable | None:
        try:
            answer = await send(batch)
        except BrokerUnavailable as exc:
            log.warning("reporting %d outcomes failed, will retry: %s", len(batch), exc)
            return exc
        except BrokerRejected as exc:
            # Repeating a request the broker refuses cannot help; the leases will expire and
            # the broker rescues the tasks as failed attempts.
            log.error("broker refused %d outcomes, dropping them: %s", len(batch), exc)
            self._forget([(o.task_id, o.lease_token) for o in batch])
            return None
        self.sent_batches += 1
        if answer.rejected:
            log.info("broker rejected %d stale outcomes (lease lost)", len(answer.rejected))
        unanswered = len(batch) - len(set(answer.accepted) | set(answer.rejected))
        if unanswered:
            log.warning("broker answered for %d fewer outcomes than sent", unanswered)
        # Forget the whole batch either way: resending what the broker ignored would loop.
        self._forget([(o.task_id, o.lease_token) for o in batch])
        return None

    def _forget(self, keys: list[LeaseKey]) -> None:
        for task_id, lease_token in keys:
            self.discard(task_id, lease_token)
        self._ledger.remove(keys)
