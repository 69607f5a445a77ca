"""The worker's event loop: register, claim, execute, report, heartbeat, drain.

One claim loop long-polls for up to the free capacity (concurrency + prefetch - leases held);
`concurrency` executors take claimed tasks in order; the reporter and the heartbeat run beside
them. On `request_stop()` the worker drains: tell the broker (its waiting claim answers), stop
claiming, release what never started, give running tasks `drain_seconds`, fail what is still
running, flush, deregister. The one thing not
to break: a task whose lease was abandoned is never reported, and nothing that was claimed is
silently dropped — it is reported, released, or left for the broker to rescue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from tq_client.protocol import BATCH_MAX, ClaimedTask, Lease, RegisterWorkerResponse
from tq_worker.app import Worker
from tq_worker.backoff import Backoff
from tq_worker.broker_client import (
    BrokerClient,
    BrokerRejected,
    BrokerUnavailable,
    WorkerGone,
    retry_delay,
)
from tq_worker.config import RuntimeConfig
from tq_worker.execution import (
    Outcome,
    failed,
    new_context,
    start_handler,
    timeout_failure,
    wait_outcome,
)
from tq_worker.heartbeat import Heartbeater
from tq_worker.ledger import Held, LeaseKey, Ledger, Stage, StopReason
from tq_worker.reporter import Reporter
from tq_worker.task_log import log_finished
from tq_worker.threads import ThreadRunner

log = logging.getLogger("tq_worker")

SHUTDOWN_ERROR = "worker shut down before the task finished"
CANCELLED_ERROR = "CancelledError: the handler was cancelled"
ABORTED_ERROR = "aborted: the handler stopped when asked"
ABORTED_UNSTARTED_ERROR = "aborted before its handler started"
ABANDONED_ERROR = (
    "aborted: the handler did not stop within the {grace:g}s grace period; the worker "
    "abandoned it (a sync handler's thread runs on until it returns)"
)
DEREGISTER_ATTEMPTS = 3
EMPTY_CLAIM_MIN_SECONDS = 0.5  # an empty claim answer ends at least this long after it began
DEREGISTER_SECONDS = 5.0
DRAIN_CALL_SECONDS = 5.0  # for the broker to hear we drain, and for our claim to answer


class Runtime:
    def __init__(self, app: Worker, config: RuntimeConfig, client: BrokerClient | None = None):
        if not app.task_types:
            raise ValueError("the worker app has no task handlers")
        self.app = app
        self.config = config
        self.client = client or BrokerClient(config.broker_url, config.worker_id, config.api_key)
        self.ledger = Ledger()
        self.reporter = Reporter(self.client, self.ledger)
        self._threads = ThreadRunner()
        self._queue: asyncio.Queue[ClaimedTask] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._register_lock = asyncio.Lock()
        self._generation = 0  # bumped by every successful registration
        self._registration: RegisterWorkerResponse | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._claim_in_flight = False
        self._executors: list[asyncio.Task[None]] = []
        self._services: list[asyncio.Task[None]] = []
        self._crash: BaseException | None = None

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    def request_stop(self) -> None:
        """First call: drain. Second call: stop waiting for running tasks."""
        if self._stopping.is_set():
            log.warning("second stop request: failing running tasks now")
            self._hurry.set()
            return
        log.info("stop requested: draining (up to %ss)", self.config.drain_seconds)
        self._stopping.set()

    async def run(self) -> None:
        """Run until `request_stop()` and the drain that follows; raises if a loop crashed."""
        try:
            if not await self._register(fatal=True):
                return
            self._start()
            await self._stopping.wait()
            await self._drain()
        finally:
            await _cancel(self._claim_task, *self._executors, *self._services)
            await self.client.aclose()
        if self._crash is not None:
            raise RuntimeError("a worker loop crashed") from self._crash

    # -- registration ---------------------------------------------------------------------

    async def _register(self, fatal: bool) -> bool:
        """Register, retrying while the broker is unreachable; False if stopped first."""
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                self._registration = await self.client.register(
                    self.app.task_types,
                    self.config.concurrency,
                    self.config.prefetch_count,
                    self.app.task_options,
                )
            except (BrokerUnavailable, BrokerRejected) as exc:
                if fatal and isinstance(exc, BrokerRejected):
                    raise
                delay = retry_delay(exc, backoff)
                log.warning("registration failed (%s); retrying in %.1fs", exc, delay)
                await self._sleep(delay)
                continue
            self._generation += 1
            log.info("registered %s for %s", self.worker_id, ", ".join(self.app.task_types))
            return True
        return False

    async def _reregister(self, generation: int) -> None:
        """The broker forgot us: what we held is lost to us; register again (once per loss)."""
        async with self._register_lock:
            if generation != self._generation:
                return  # another loop already registered again since that request
            self._abandon_all()
            if not self._stopping.is_set():
                await self._register(fatal=False)

    def _abandon(self, keys: Iterable[LeaseKey]) -> None:
        for held in self.ledger.remove(keys):
            held.stop(StopReason.ABANDONED)
            self.reporter.discard(*held.key)

    def _abort(self, keys: Iterable[LeaseKey]) -> None:
        """The broker asks to stop these tasks: a running handler gets the grace period; one
        not started yet is reported at once. Either way the broker ends the task cancelled."""
        wanted = set(keys)
        for held in self.ledger.leases():
            if held.key not in wanted:
                continue
            if held.stage is Stage.RUNNING and held.stop_reason is None:
                log.info("task %s aborted; stopping its handler", held.task.task_id)
                held.abort(self._abort_grace_seconds)
            elif held.stage is Stage.QUEUED and self.ledger.finish(held):
                self.reporter.put(failed(held.task, ABORTED_UNSTARTED_ERROR, retryable=False))

    @property
    def _abort_grace_seconds(self) -> float:
        assert self._registration is not None
        return self._registration.abort_grace_seconds

    def _abandon_all(self) -> None:
        for held in self.ledger.remove_all():
            held.stop(StopReason.ABANDONED)
        self.reporter.discard_all()

    # -- the loops ------------------------------------------------------------------------

    def _start(self) -> None:
        heartbeater = Heartbeater(
            client=self.client,
            ledger=self.ledger,
            interval=self._heartbeat_interval,
            abandon=self._abandon,
            reregister=self._reregister,
            generation=lambda: self._generation,
            abort=self._abort,
        )
        self._services = [self._spawn(heartbeater.run()), self._spawn(self.reporter.run())]
        self._executors = [
            self._spawn(self._execute_forever()) for _ in range(self.config.concurrency)
        ]
        self._claim_task = self._spawn(self._claim_forever())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        task.add_done_callback(self._on_loop_done)
        return task

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("worker loop crashed; draining", exc_info=task.exception())
        self._crash = self._crash or task.exception()
        self.request_stop()

    def _heartbeat_interval(self) -> float:
        assert self._registration is not None
        return self._registration.heartbeat_interval_seconds

    async def _claim_forever(self) -> None:
        assert self._registration is not None
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            free = await self._free_capacity()
            wait = min(self.config.claim_wait_seconds, self._registration.claim_wait_max_seconds)
            generation = self._generation
            started = loop.time()
            if self._stopping.is_set():
                return
            try:
                tasks = await self._claim(min(free, BATCH_MAX), wait)
            except WorkerGone as exc:
                log.warning("claim: broker no longer knows this worker (%s)", exc)
                await self._reregister(generation)
                continue
            except (BrokerUnavailable, BrokerRejected) as exc:
                delay = retry_delay(exc, backoff)
                log.warning("claim failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            for held in self.ledger.add(tasks, loop.time()):
                self._queue.put_nowait(held.task)
            if self._stopping.is_set():
                return  # the drain releases what this last claim brought
            if not tasks:  # a broker that answers empty at once (no long-poll) is not hammered
                await asyncio.sleep(max(0.0, EMPTY_CLAIM_MIN_SECONDS - (loop.time() - started)))

    async def _claim(self, max_tasks: int, wait: float) -> list[ClaimedTask]:
        self._claim_in_flight = True
        try:
            return await self.client.claim(max_tasks, wait)
        finally:
            self._claim_in_flight = False

    async def _free_capacity(self) -> int:
        """Leases we may still take: capacity counts every lease held, outcomes not yet
        acknowledged included, so a heartbeat never carries more than concurrency + prefetch."""
        while (free := self.config.capacity - len(self.ledger)) <= 0:
            self.ledger.changed.clear()
            await self.ledger.changed.wait()
        return free

    async def _execute_forever(self) -> None:
        while True:
            task = await self._queue.get()
            held = self.ledger.current(task)
            if held is None or held.stage is not Stage.QUEUED or self._stopping.is_set():
                continue  # abandoned, or to be released by the drain
            outcome = await self._execute(held)
            if outcome is not None and self.ledger.finish(held):
                self.reporter.put(outcome)
                log_finished(held, outcome)
            elif outcome is None:
                log_finished(held, None)

    async def _execute(self, held: Held) -> Outcome | None:
        task = held.task
        registered = self.app.get(task.task_type)
        if registered is None:
            return failed(task, f"LookupError: this worker has no handler for {task.task_type!r}")
        remaining = held.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:  # waited in the prefetch queue past its deadline: do not start it
            return timeout_failure(task, registered)
        ctx = new_context(task, remaining)
        handle = start_handler(registered, task.payload, self._threads, ctx)
        held.given_up = asyncio.get_running_loop().create_future()
        self.ledger.start(held, handle, ctx)
        outcome = await wait_outcome(task, handle, remaining, registered, held.given_up)
        if outcome is not None:
            if handle.cancelled():  # timed out: a sync handler may still run; tell it
                ctx.cancel("timeout")
            return outcome
        if held.stop_reason is StopReason.ABANDONED:
            return None
        if held.stop_reason is StopReason.ABORTED:
            if handle.done():
                return failed(task, ABORTED_ERROR, retryable=False)
            return failed(
                task, ABANDONED_ERROR.format(grace=self._abort_grace_seconds), retryable=False
            )
        return failed(task, SHUTDOWN_ERROR if held.stop_reason else CANCELLED_ERROR)

    # -- drain ----------------------------------------------------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        await self._stop_claiming()
        release = asyncio.create_task(
            self._release([h.lease for h in self.ledger.mark_releasing()])
        )
        await self._wait_for_running(loop.time() + self.config.drain_seconds)
        for held in self.ledger.running():
            held.stop(StopReason.SHUTDOWN)
            if self.ledger.finish(held):
                outcome = failed(held.task, SHUTDOWN_ERROR)
                self.reporter.put(outcome)
                log_finished(held, outcome)
        await _cancel(*self._executors)
        flush_deadline = loop.time() + self.config.flush_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release, self.config.flush_seconds)
        if not await self.reporter.flush(max(0.0, flush_deadline - loop.time())):
            log.warning(
                "gave up reporting %d outcomes; the broker will rescue them", self.reporter.pending
            )
        await _cancel(*self._services)
        try:
            await asyncio.wait_for(self._deregister(), DEREGISTER_SECONDS)
        except TimeoutError:
            log.warning("could not deregister; the broker will mark this worker offline")

    async def _stop_claiming(self) -> None:
        """Tell the broker first, so that it ends our waiting claim and that claim *answers*:
        a task it took just before reaches us (and is released below) instead of dying with a
        cancelled request and waiting for its lease to expire, which would cost an attempt."""
        claim = self._claim_task
        try:
            await asyncio.wait_for(self.client.drain(), DRAIN_CALL_SECONDS)
        except (BrokerUnavailable, BrokerRejected, WorkerGone, TimeoutError) as exc:
            log.warning("could not tell the broker we drain (%s); abandoning the claim", exc)
        else:
            if claim is not None and self._claim_in_flight:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(claim), DRAIN_CALL_SECONDS)
        await _cancel(claim)

    async def _wait_for_running(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.ledger.running_count and not self._hurry.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("drain period over; %d tasks still running", self.ledger.running_count)
                return
            self.ledger.changed.clear()
            waiters = [
                asyncio.create_task(self.ledger.changed.wait()),
                asyncio.create_task(self._hurry.wait()),
            ]
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            await _cancel(*waiters)

    async def _release(self, leases: list[Lease]) -> None:
        backoff = Backoff()
        while leases:
            batch = leases[:BATCH_MAX]
            try:
                answer = await self.client.release(batch)
            except BrokerUnavailable as exc:
                delay = retry_delay(exc, backoff)
                log.warning("release failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            except BrokerRejected as exc:
                log.error("broker refused to release %d tasks: %s", len(batch), exc)
            else:
                log.info("released %d unstarted tasks", len(answer.accepted))
            self.ledger.remove((lease.task_id, lease.lease_token) for lease in batch)
            leases = leases[BATCH_MAX:]

    async def _deregister(self) -> None:
        backoff = Backoff()
        for attempt in range(1, DEREGISTER_ATTEMPTS + 1):
            try:
                await self.client.deregister()
            except (BrokerUnavailable, BrokerRejected) as exc:
                log.warning("deregister attempt %d failed: %s", attempt, exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            log.info("deregistered %s", self.worker_id)
            return

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early if a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


async def _cancel(*tasks: asyncio.Future[Any] | None) -> None:
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
