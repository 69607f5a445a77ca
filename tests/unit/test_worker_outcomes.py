"""What a handler's return value or exception becomes on the wire, and the worker's timeout."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from tq_client.protocol import ClaimedTask, CompletedTask, FailedTask
from tq_worker import PermanentFailure, Worker
from tq_worker.execution import (
    ERROR_MAX_CHARS,
    error_text,
    outcome_of,
    start_handler,
    to_result,
    wait_outcome,
)
from tq_worker.threads import ThreadRunner


def claimed(task_type: str = "t", timeout_seconds: int = 60) -> ClaimedTask:
    return ClaimedTask(
        task_id=uuid.uuid4(),
        task_type=task_type,
        payload=b"in",
        priority=100,
        lease_token=uuid.uuid4(),
        lease_expires_at=datetime.now(UTC),
        timeout_seconds=timeout_seconds,
        retry_count=0,
        max_retries=3,
    )


def test_none_is_an_empty_result_and_bytes_are_kept() -> None:
    assert to_result(None, "t") == b""
    assert to_result(b"\x00\xff", "t") == b"\x00\xff"


@pytest.mark.parametrize("value", ["text", 1, bytearray(b"x"), [b"x"]])
def test_anything_but_bytes_or_none_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="expected bytes or None"):
        to_result(value, "t")


def test_a_wrong_return_type_is_reported_as_a_retryable_failure() -> None:
    task = claimed("send_email")
    outcome = outcome_of(task, value="not bytes")
    assert isinstance(outcome, FailedTask)
    assert (
        outcome.error == "TypeError: handler for 'send_email' returned str; expected bytes or None"
    )
    assert outcome.retryable is True
    assert (outcome.task_id, outcome.lease_token) == (task.task_id, task.lease_token)


def test_a_result_is_a_completion_carrying_the_lease() -> None:
    task = claimed()
    outcome = outcome_of(task, value=b"done")
    assert outcome == CompletedTask(
        task_id=task.task_id, lease_token=task.lease_token, result=b"done"
    )


def test_exceptions_are_retryable_as_type_colon_message() -> None:
    outcome = outcome_of(claimed(), exc=ValueError("bad input"))
    assert isinstance(outcome, FailedTask)
    assert (outcome.error, outcome.retryable) == ("ValueError: bad input", True)


def test_permanent_failure_and_its_subclasses_are_not_retryable() -> None:
    class Hopeless(PermanentFailure):
        pass

    for exc in (PermanentFailure("no such user"), Hopeless("gone")):
        outcome = outcome_of(claimed(), exc=exc)
        assert isinstance(outcome, FailedTask) and outcome.retryable is False
    assert error_text(Hopeless("gone")) == "Hopeless: gone"


def test_error_text_is_cut_to_the_broker_limit_and_empty_messages_show_the_type() -> None:
    text = error_text(RuntimeError("x" * 50_000))
    assert len(text) == ERROR_MAX_CHARS and text.startswith("RuntimeError: xxx")
    assert error_text(KeyError()) == "KeyError"
    outcome = outcome_of(claimed(), exc=RuntimeError("y" * 20_000))
    assert isinstance(outcome, FailedTask) and len(outcome.error) == ERROR_MAX_CHARS


async def test_async_and_sync_handlers_run_to_an_outcome() -> None:
    worker = Worker()

    @worker.task("a")
    async def upper(payload: bytes) -> bytes:
        return payload.upper()

    @worker.task("s")
    def thread_name(payload: bytes) -> bytes:
        return threading.current_thread().name.encode()

    threads = ThreadRunner()
    task = claimed()
    done = await wait_outcome(task, start_handler(worker.handlers["a"], b"ab", threads), 5)
    assert isinstance(done, CompletedTask) and done.result == b"AB"
    done = await wait_outcome(task, start_handler(worker.handlers["s"], b"", threads), 5)
    assert isinstance(done, CompletedTask) and done.result.startswith(b"tq-handler-")


async def test_an_async_handler_past_its_timeout_is_cancelled_and_failed() -> None:
    worker = Worker()
    cancelled = asyncio.Event()

    @worker.task("slow")
    async def slow(payload: bytes) -> bytes:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    task = claimed(timeout_seconds=7)
    handle = start_handler(worker.handlers["slow"], b"", ThreadRunner())
    outcome = await wait_outcome(task, handle, 0.05)
    assert isinstance(outcome, FailedTask) and outcome.retryable
    assert outcome.error.startswith("TimeoutError:") and "timeout_seconds=7" in outcome.error
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_a_hung_sync_handler_is_failed_at_its_timeout_and_costs_only_its_thread() -> None:
    worker = Worker()
    release = threading.Event()

    @worker.task("hang")
    def hang(payload: bytes) -> bytes:
        release.wait(30)
        return b"late"

    @worker.task("quick")
    def quick(payload: bytes) -> bytes:
        return b"ok"

    threads = ThreadRunner()
    started = time.monotonic()
    outcome = await wait_outcome(
        claimed(), start_handler(worker.handlers["hang"], b"", threads), 0.1
    )
    assert isinstance(outcome, FailedTask) and outcome.error.startswith("TimeoutError:")
    assert time.monotonic() - started < 5
    # The hung thread is still busy; another sync handler gets a thread of its own.
    outcome = await wait_outcome(
        claimed(), start_handler(worker.handlers["quick"], b"", threads), 5
    )
    assert isinstance(outcome, CompletedTask) and outcome.result == b"ok"
    assert threads.threads_started == 2
    release.set()


async def test_idle_handler_threads_are_reused() -> None:
    worker = Worker()
    worker.task("quick")(lambda payload: b"ok")
    threads = ThreadRunner()
    for _ in range(20):
        handle = start_handler(worker.handlers["quick"], b"", threads)
        assert await wait_outcome(claimed(), handle, 5) is not None
    assert threads.threads_started == 1


async def test_a_handle_cancelled_from_outside_has_no_outcome() -> None:
    worker = Worker()

    @worker.task("slow")
    async def slow(payload: bytes) -> bytes:
        await asyncio.sleep(60)
        return b""

    handle = start_handler(worker.handlers["slow"], b"", ThreadRunner())
    asyncio.get_running_loop().call_later(0.01, handle.cancel)
    assert await wait_outcome(claimed(), handle, 30) is None
