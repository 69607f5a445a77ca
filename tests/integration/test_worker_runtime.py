"""The worker runtime against a real `tq-broker` process on real PostgreSQL.

Most tests run the runtime in this test's event loop (so handlers can be test functions); the
drain test runs `tq-worker` as a real process and sends it SIGTERM. Every wait is a bounded poll
of a condition, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tq_worker import PermanentFailure, Worker
from tq_worker.config import RuntimeConfig
from tq_worker.demo import fail as demo_fail
from tq_worker.demo import worker as demo_worker
from tq_worker.runtime import SHUTDOWN_ERROR, Runtime

from ..support.processes import BrokerProcess, bin_path

T = TypeVar("T")
WAIT_SECONDS = 30.0
# Fast broker clocks so the tests take seconds; no retry backoff so retries run at once.
FAST_BROKER = {
    "TQ_BACKOFF_BASE_SECONDS": "0",
    "TQ_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "TQ_CLAIM_POLL_INTERVAL_SECONDS": "0.2",
    "TQ_RESCUE_INTERVAL_SECONDS": "0.2",
}


def start_broker(database_url: str, log_path: Path, **env: str) -> BrokerProcess:
    return BrokerProcess(
        ["--database-url", database_url], log_path, env={**FAST_BROKER, **env}
    ).start()


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    process = start_broker(database_url, tmp_path / "broker.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http(broker: BrokerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=broker.url, timeout=10) as client:
        yield client


@contextlib.asynccontextmanager
async def running(app: Worker, broker_url: str, **config: Any) -> AsyncIterator[Runtime]:
    """The runtime in this loop; on exit it is asked to stop and its drain is awaited."""
    runtime = Runtime(app, RuntimeConfig(broker_url=broker_url, **config))
    task = asyncio.create_task(runtime.run())
    try:
        yield runtime
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, WAIT_SECONDS)


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT_SECONDS
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def submit(
    http: httpx.AsyncClient, task_type: str, payload: bytes = b"", **fields: Any
) -> str:
    body = {"task_type": task_type, "payload": base64.b64encode(payload).decode(), **fields}
    response = await http.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


async def get_task(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def task_in(http: httpx.AsyncClient, task_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        task = await get_task(http, task_id)
        return task if task["status"] in statuses else None

    return await eventually(check, f"task {task_id} to be {' or '.join(statuses)}")


async def worker_ids(http: httpx.AsyncClient) -> list[str]:
    return [worker["worker_id"] for worker in (await http.get("/api/v1/workers")).json()]


async def test_echo_round_trip_completes_with_the_payload_as_result(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    payload = b"hello \x00\xff world"
    task_id = await submit(http, "echo", payload)
    async with running(demo_worker, broker.url, concurrency=2) as runtime:
        task = await task_in(http, task_id, "completed")
    assert base64.b64decode(task["result"]) == payload
    assert (task["retry_count"], task["error"], task["worker_id"]) == (0, None, runtime.worker_id)


async def test_many_tasks_complete_in_batches_with_bounded_prefetch(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    ids = [await submit(http, "echo", str(n).encode()) for n in range(60)]
    held: list[int] = []
    async with running(demo_worker, broker.url, concurrency=4, prefetch=2) as runtime:

        async def sample() -> None:
            while True:
                held.append(runtime.ledger.unfinished)
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        for task_id in ids:
            await task_in(http, task_id, "completed")
        sampler.cancel()
    assert 0 < max(held) <= 6, "never more than concurrency + prefetch unfinished"
    results = [base64.b64decode((await get_task(http, i))["result"]) for i in ids]
    assert results == [str(n).encode() for n in range(60)]


async def test_a_failing_handler_is_retried_then_dead_lettered_after_max_retries_plus_one(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    attempts: list[bytes] = []
    worker = Worker()

    @worker.task("fail")
    def counting_fail(payload: bytes) -> bytes:
        attempts.append(payload)
        return demo_fail(payload)

    task_id = await submit(http, "fail", b"x", max_retries=2)
    async with running(worker, broker.url):
        task = await task_in(http, task_id, "dead_letter")
    assert task["retry_count"] == 2
    assert task["error"].startswith("RuntimeError: demo failure\n\nTraceback")
    assert len(attempts) == 3


async def test_permanent_failure_dead_letters_at_the_first_attempt(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    attempts: list[bytes] = []
    worker = Worker()

    @worker.task("charge")
    async def charge(payload: bytes) -> bytes:
        attempts.append(payload)
        raise PermanentFailure("card declined")

    task_id = await submit(http, "charge", max_retries=5)
    async with running(worker, broker.url):
        task = await task_in(http, task_id, "dead_letter")
    assert task["retry_count"] == 0
    assert task["error"].startswith("PermanentFailure: card declined\n\nTraceback")
    assert "in charge" in task["error"]
    assert len(attempts) == 1


async def test_handlers_past_timeout_seconds_are_failed_by_the_worker(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    cancelled = asyncio.Event()
    release_thread = threading.Event()
    worker = Worker()

    @worker.task("slow_async")
    async def slow_async(payload: bytes) -> bytes:
        try:
            await asyncio.sleep(WAIT_SECONDS)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    @worker.task("slow_sync")
    def slow_sync(payload: bytes) -> bytes:
        release_thread.wait(WAIT_SECONDS)
        return b""

    # The broker's own deadline is timeout + 30 s grace: an error within it is the worker's.
    started = time.monotonic()
    ids = [
        await submit(http, kind, timeout_seconds=1, max_retries=0)
        for kind in ("slow_async", "slow_sync")
    ]
    try:
        async with running(worker, broker.url, concurrency=2):
            tasks = [await task_in(http, task_id, "dead_letter") for task_id in ids]
            await asyncio.wait_for(cancelled.wait(), WAIT_SECONDS)
    finally:
        release_thread.set()
    assert time.monotonic() - started < 15
    for task in tasks:
        assert task["error"] == "TimeoutError: the handler did not finish within timeout_seconds=1"


async def test_tasks_still_running_when_the_drain_period_ends_are_failed(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    task_id = await submit(http, "sleep", b"60", max_retries=0)
    async with running(demo_worker, broker.url, drain_seconds=0.2) as runtime:
        await eventually(lambda: _running_count(runtime), "the sleep task to start")
    task = await get_task(http, task_id)
    assert (task["status"], task["error"]) == ("dead_letter", SHUTDOWN_ERROR)
    assert runtime.worker_id not in await worker_ids(http)


async def _running_count(runtime: Runtime) -> int:
    return runtime.ledger.running_count


async def test_a_worker_the_broker_forgot_registers_again_and_keeps_working(
    broker: BrokerProcess, http: httpx.AsyncClient
) -> None:
    async with running(demo_worker, broker.url) as runtime:
        await eventually(lambda: _listed(http, runtime.worker_id), "the worker to register")
        assert (await http.delete(f"/api/v1/workers/{runtime.worker_id}")).status_code == 204
        await eventually(lambda: _listed(http, runtime.worker_id), "the worker to come back")
        task_id = await submit(http, "echo", b"after")
        task = await task_in(http, task_id, "completed")
    assert base64.b64decode(task["result"]) == b"after"


async def _listed(http: httpx.AsyncClient, worker_id: str) -> bool:
    return worker_id in await worker_ids(http)


async def test_a_task_whose_lease_is_lost_is_abandoned_and_its_result_never_reported(
    database_url: str, tmp_path: Path
) -> None:
    # Heartbeats slower than the lease: the broker rescues the task, the next beat abandons it.
    broker = start_broker(
        database_url,
        tmp_path / "broker.log",
        TQ_HEARTBEAT_INTERVAL_SECONDS="2",
        TQ_LEASE_TTL_SECONDS="0.5",
        TQ_WORKER_SILENT_SECONDS="60",
    )
    cancelled = asyncio.Event()
    worker = Worker()

    @worker.task("long")
    async def long(payload: bytes) -> bytes:
        try:
            await asyncio.sleep(WAIT_SECONDS)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b"too late"

    try:
        async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
            task_id = await submit(http, "long", max_retries=0)
            async with running(worker, broker.url) as runtime:
                await asyncio.wait_for(cancelled.wait(), WAIT_SECONDS)
                assert len(runtime.ledger) == 0 and runtime.reporter.pending == 0
            task = await get_task(http, task_id)
    finally:
        broker.stop()
    assert task["status"] == "dead_letter"
    assert task["result"] is None and task["error"].startswith("lease expired")


async def test_results_finished_while_the_broker_is_down_are_reported_when_it_returns(
    database_url: str, tmp_path: Path
) -> None:
    broker = start_broker(database_url, tmp_path / "broker.log")
    finished = threading.Event()
    go = threading.Event()
    worker = Worker()

    @worker.task("job")
    def job(payload: bytes) -> bytes:
        go.wait(WAIT_SECONDS)
        finished.set()
        return b"survived"

    try:
        async with httpx.AsyncClient(base_url=broker.url, timeout=10) as http:
            task_id = await submit(http, "job")
            async with running(worker, broker.url) as runtime:
                await task_in(http, task_id, "in_progress")
                await eventually(lambda: _running_count(runtime), "the job to start")
                await asyncio.to_thread(broker.kill)
                go.set()
                await asyncio.to_thread(finished.wait, WAIT_SECONDS)
                await eventually(lambda: _pending_reports(runtime), "the result to be buffered")
                await asyncio.to_thread(broker.start)
                task = await task_in(http, task_id, "completed")
    finally:
        go.set()
        broker.stop()
    assert base64.b64decode(task["result"]) == b"survived"
    assert task["retry_count"] == 0


async def _pending_reports(runtime: Runtime) -> int:
    return runtime.reporter.pending


def start_worker_process(
    broker: BrokerProcess, log_path: Path, *args: str
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [
                bin_path("tq-worker"),
                "--app",
                "tq_worker.demo:worker",
                "--broker-url",
                broker.url,
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def test_sigterm_finishes_the_running_task_releases_the_rest_and_deregisters(
    broker: BrokerProcess, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    sleeper = await submit(http, "sleep", b"2", priority=200)
    echoes = [await submit(http, "echo", str(n).encode()) for n in range(3)]
    process = start_worker_process(
        broker, log_path, "--concurrency", "1", "--prefetch", "1", "--drain-seconds", "20"
    )
    try:
        # The sleeper runs; one echo waits in the prefetch queue (both are in_progress).
        await task_in(http, sleeper, "in_progress")
        claimed = await eventually(lambda: _in_progress(http, echoes), "an echo to be prefetched")
        # current_tasks comes from the worker's heartbeat: the sleeper has really started.
        worker_a = await eventually(lambda: _busy_worker(http), "the worker to report 1 task")
        process.send_signal(signal.SIGTERM)

        # Released at once, without an attempt counted, while the sleeper is still running.
        released = await task_in(http, claimed, "pending")
        assert released["retry_count"] == 0
        assert (await get_task(http, sleeper))["status"] == "in_progress"

        done = await task_in(http, sleeper, "completed")
        assert (done["worker_id"], done["retry_count"]) == (worker_a, 0)
        assert await asyncio.to_thread(process.wait, WAIT_SECONDS) == 0, log_path.read_text()
        assert worker_a not in await worker_ids(http)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # Another worker picks up what the first one released.
    async with running(demo_worker, broker.url) as worker_b:
        finished = [await task_in(http, task_id, "completed") for task_id in echoes]
    assert {task["worker_id"] for task in finished} == {worker_b.worker_id}
    assert [base64.b64decode(task["result"]) for task in finished] == [b"0", b"1", b"2"]
    assert all(task["retry_count"] == 0 for task in finished)


async def _busy_worker(http: httpx.AsyncClient) -> str | None:
    workers = (await http.get("/api/v1/workers")).json()
    busy = [w["worker_id"] for w in workers if w["current_tasks"] == 1]
    return busy[0] if busy else None


async def _in_progress(http: httpx.AsyncClient, task_ids: list[str]) -> str | None:
    for task_id in task_ids:
        if (await get_task(http, task_id))["status"] == "in_progress":
            return task_id
    return None
