"""The Python SDK end to end against a real `tq-broker` on real PostgreSQL: JSON payloads,
waiting for results, the handler context, per-type defaults and retry rules, and the errors
and log lines a failure leaves. The worker runtime runs in this test's event loop (its
handlers are test functions); tests/integration/test_sdk_processes.py runs `tq-worker`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tq_client import AsyncTaskQueueClient, TaskQueueClient
from tq_client.models import AttemptOutcome, TaskStatus, WorkerInfo
from tq_client.payloads import decode_json
from tq_client.waiting import WaitTimeout
from tq_worker import PermanentFailure, TaskContext, Worker

from ..support.processes import BrokerProcess
from .test_worker_runtime import WAIT_SECONDS, running, start_broker


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    process = start_broker(database_url, tmp_path / "broker.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(broker: BrokerProcess) -> AsyncIterator[AsyncTaskQueueClient]:
    async with AsyncTaskQueueClient(broker.url) as async_client:
        yield async_client


async def test_a_str_or_dict_payload_raises_before_anything_reaches_the_broker(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    bad: list[Any] = ["hello", "aGk=", {"width": 640}]
    for payload in bad:
        with pytest.raises(TypeError, match="json="):
            await client.submit("resize", payload)
        with TaskQueueClient(broker.url) as sync_client, pytest.raises(TypeError, match="bytes"):
            sync_client.submit("resize", payload=payload)
    assert await client.list() == []


async def test_json_in_json_out_and_submit_wait_returns_the_finished_task(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    worker = Worker()

    @worker.task("resize", json=True)
    async def resize(job: dict[str, Any]) -> dict[str, Any]:
        return {"width": job["width"] // 2, "name": job["name"]}

    @worker.task("greet")
    def greet(payload: bytes) -> str:
        return f"héllo {payload.decode()}"

    async with running(worker, broker.url):
        done = await client.submit("resize", json={"width": 640, "name": "ü.png"}, wait=30)
        assert done.status is TaskStatus.COMPLETED
        assert decode_json(done.result or b"") == {"width": 320, "name": "ü.png"}
        greeting = await client.submit("greet", b"bob", wait=30)
        assert greeting.result == "héllo bob".encode()
        with TaskQueueClient(broker.url) as sync_client:
            submitted = sync_client.submit("resize", json={"width": 10, "name": "x"})
            finished = await asyncio.to_thread(sync_client.wait, submitted.task_id, 30)
    assert decode_json(finished.result or b"") == {"width": 5, "name": "x"}


async def test_wait_times_out_on_a_task_nobody_serves_and_returns_cancelled_tasks(
    client: AsyncTaskQueueClient,
) -> None:
    submitted = await client.submit("nobody_serves_this", b"")
    with pytest.raises(TimeoutError) as raised:
        await client.wait(submitted.task_id, timeout=0.5)
    assert isinstance(raised.value, WaitTimeout)
    assert raised.value.task.status is TaskStatus.PENDING
    waiter = asyncio.create_task(client.wait(submitted.task_id, timeout=WAIT_SECONDS))
    await client.cancel(submitted.task_id)
    assert (await waiter).status is TaskStatus.CANCELLED


async def test_ctx_counts_attempts_and_retry_on_limits_retries_to_listed_errors(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    seen: list[tuple[int, bool]] = []
    worker = Worker()

    @worker.task("flaky", json=True, max_retries=3, retry_on=(ConnectionError,))
    def flaky(job: dict[str, int], ctx: TaskContext) -> dict[str, int]:
        seen.append((ctx.attempt, ctx.is_last_attempt))
        if job["kind"] == "bug":
            raise KeyError("sku")  # not in retry_on: dead at once
        if ctx.attempt < 3:
            raise ConnectionError(f"reset on attempt {ctx.attempt}")
        return {"attempt": ctx.attempt}

    async with running(worker, broker.url):
        retried = await client.submit("flaky", json={"kind": "network"}, wait=WAIT_SECONDS)
        assert decode_json(retried.result or b"") == {"attempt": 3}
        assert seen == [(1, False), (2, False), (3, False)]
        seen.clear()
        bug = await client.submit("flaky", json={"kind": "bug"}, wait=WAIT_SECONDS)
    assert (bug.status, bug.retry_count, seen) == (TaskStatus.DEAD_LETTER, 0, [(1, False)])
    assert (bug.error or "").startswith("KeyError: 'sku'\n\nTraceback")
    attempts = await client.attempts(retried.task_id)
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, AttemptOutcome.FAILED),
        (2, AttemptOutcome.FAILED),
        (3, AttemptOutcome.COMPLETED),
    ]
    assert [(a.error or "").split("\n")[0] for a in attempts[:2]] == [
        "ConnectionError: reset on attempt 1",
        "ConnectionError: reset on attempt 2",
    ]
    assert all("in flaky" in (a.error or "") for a in attempts[:2])


async def test_registered_defaults_apply_to_submits_that_leave_them_out(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    worker = Worker()
    worker.task("report", max_retries=7, timeout_seconds=45)(lambda payload: None)
    async with running(worker, broker.url) as runtime:
        # Defaults apply at submit: they are known once a worker of the type has registered.
        me = await _registered(client, runtime.worker_id)
        assert (me.task_types, me.concurrency, me.status.value) == (["report"], 4, "online")
        defaulted = await client.submit("report", wait=WAIT_SECONDS)
        explicit = await client.submit(
            "report", max_retries=1, timeout_seconds=5, wait=WAIT_SECONDS
        )
    assert (defaulted.max_retries, defaulted.timeout_seconds) == (7, 45)
    assert (explicit.max_retries, explicit.timeout_seconds) == (1, 5)


async def test_a_types_backoff_sets_when_the_retry_runs(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    # The test broker's own backoff is 0 s: a retry due 15-30 s later is the worker's delay.
    worker = Worker()
    failed_once = threading.Event()

    @worker.task("slow_retry", backoff=(30, 30))
    def slow_retry(payload: bytes) -> None:
        failed_once.set()
        raise OSError("try later")

    submitted = await client.submit("slow_retry", max_retries=2)
    async with running(worker, broker.url):
        await asyncio.to_thread(failed_once.wait, WAIT_SECONDS)
        task = await _until(client, submitted.task_id, TaskStatus.FAILED)
    (attempt,) = await client.attempts(submitted.task_id)
    assert task.run_at is not None and attempt.finished_at is not None
    delay = (task.run_at - attempt.finished_at).total_seconds()
    assert 14 <= delay <= 31, delay
    await client.cancel(submitted.task_id)


async def test_wrong_return_values_fail_without_retry_and_say_how_to_fix_them(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    runs: list[int] = []
    worker = Worker()

    @worker.task("lookup")
    def lookup(payload: bytes):  # type: ignore[no-untyped-def]  # unannotated: checked at run time
        runs.append(1)
        return {"sku": 1}

    @worker.task("hopeless")
    async def hopeless(payload: bytes) -> None:
        runs.append(2)
        raise PermanentFailure("no such customer")

    async with running(worker, broker.url):
        wrong = await client.submit("lookup", max_retries=3, wait=WAIT_SECONDS)
        dead = await client.submit("hopeless", max_retries=3, wait=WAIT_SECONDS)
    assert (wrong.status, wrong.retry_count) == (TaskStatus.DEAD_LETTER, 0)
    assert wrong.error == (
        "ResultError: handler for 'lookup' returned dict; expected bytes, str or None "
        "(register it with json=True to return JSON values)"
    )
    assert (dead.status, dead.retry_count) == (TaskStatus.DEAD_LETTER, 0)
    assert (dead.error or "").startswith("PermanentFailure: no such customer\n\nTraceback")
    assert "in hopeless" in (dead.error or "")
    assert runs == [1, 2]


async def test_each_finished_attempt_is_one_log_line_with_its_facts(
    client: AsyncTaskQueueClient, broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker()

    @worker.task("maybe", json=True)
    def maybe(job: dict[str, bool], ctx: TaskContext) -> str:
        if job["fail"] and ctx.attempt == 1:
            raise ValueError("first try fails")
        return "ok"

    caplog.set_level(logging.INFO, logger="tq_worker.task")
    async with running(worker, broker.url):
        done = await client.submit("maybe", json={"fail": True}, max_retries=1, wait=WAIT_SECONDS)
    lines = [r for r in caplog.records if r.name == "tq_worker.task"]
    assert [(r.outcome, r.attempt, r.levelname) for r in lines] == [  # type: ignore[attr-defined]
        ("failed", 1, "WARNING"),
        ("completed", 2, "INFO"),
    ]
    first, second = lines
    assert first.task_id == second.task_id == str(done.task_id)  # type: ignore[attr-defined]
    assert first.will_retry is True and first.error == "ValueError: first try fails"  # type: ignore[attr-defined]
    assert second.duration_ms >= 0 and second.task_type == "maybe"  # type: ignore[attr-defined]
    assert first.getMessage().startswith(f"task {done.task_id} maybe failed in ")
    assert "(attempt 1/2, will retry): ValueError: first try fails" in first.getMessage()


async def test_a_stopped_attempt_sets_the_cancelled_flag_a_sync_handler_can_see(
    client: AsyncTaskQueueClient, broker: BrokerProcess
) -> None:
    started = threading.Event()
    saw: list[str | None] = []
    worker = Worker()

    @worker.task("long", timeout_seconds=60)
    def long(payload: bytes, ctx: TaskContext) -> None:
        started.set()
        ctx.cancel_event.wait(WAIT_SECONDS)
        saw.append(ctx.cancel_reason)

    submitted = await client.submit("long", max_retries=0)
    async with running(worker, broker.url, drain_seconds=0.2):
        await asyncio.to_thread(started.wait, WAIT_SECONDS)
    task = await client.wait(submitted.task_id, timeout=WAIT_SECONDS)
    await asyncio.to_thread(_until_true, lambda: bool(saw))
    assert saw == ["shutdown"] and task.status is TaskStatus.DEAD_LETTER


def _until_true(check: Any) -> None:
    for _ in range(int(WAIT_SECONDS / 0.02)):
        if check():
            return
        threading.Event().wait(0.02)
    raise AssertionError("condition never became true")


async def _registered(client: AsyncTaskQueueClient, worker_id: str) -> WorkerInfo:
    for _ in range(int(WAIT_SECONDS / 0.05)):
        for worker in await client.workers():
            if worker.worker_id == worker_id:
                return worker
        await asyncio.sleep(0.05)
    raise AssertionError(f"worker {worker_id} never registered")


async def _until(client: AsyncTaskQueueClient, task_id: Any, status: TaskStatus) -> Any:
    for _ in range(int(WAIT_SECONDS / 0.05)):
        task = await client.get(task_id)
        if task.status is status:
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} never became {status.value}")
