"""What a handler's return value or exception becomes on the wire, and the worker's timeout."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tq_client.protocol import ClaimedTask, CompletedTask, FailedTask
from tq_worker import PermanentFailure, Worker
from tq_worker.app import Registered
from tq_worker.execution import (
    ResultError,
    outcome_of,
    start_handler,
    to_result,
    wait_outcome,
)
from tq_worker.failures import ERROR_MAX_BYTES, error_report, headline
from tq_worker.threads import ThreadRunner


def claimed(task_type: str = "t", timeout_seconds: int = 60, retry_count: int = 0) -> ClaimedTask:
    return ClaimedTask(
        task_id=uuid.uuid4(),
        task_type=task_type,
        payload=b"in",
        priority=100,
        lease_token=uuid.uuid4(),
        lease_expires_at=datetime.now(UTC),
        timeout_seconds=timeout_seconds,
        retry_count=retry_count,
        max_retries=30,
    )


def registered(task_type: str = "t", **options: Any) -> Registered:
    worker = Worker()
    worker.task(task_type, **options)(lambda payload: payload)
    return worker.handlers[task_type]


def test_none_is_an_empty_result_bytes_are_kept_and_str_is_utf8() -> None:
    plain = registered()
    assert to_result(None, plain) == b""
    assert to_result(b"\x00\xff", plain) == b"\x00\xff"
    assert to_result("héllo", plain) == "héllo".encode()
    assert to_result(bytearray(b"x"), plain) == b"x"


@pytest.mark.parametrize("value", [1, 2.5, [b"x"], {"a": 1}, object()])
def test_anything_but_bytes_str_or_none_is_refused_and_names_json(value: object) -> None:
    with pytest.raises(ResultError, match=r"expected bytes, str or None.*json=True"):
        to_result(value, registered())


def test_a_json_handler_result_is_its_compact_utf8_json() -> None:
    assert to_result({"size": [1, 2], "name": "é"}, registered(json=True)) == (
        '{"size":[1,2],"name":"é"}'.encode()
    )
    assert to_result(None, registered(json=True)) == b"null"
    with pytest.raises(ResultError, match="JSON cannot hold"):
        to_result({"x": object()}, registered(json=True))
    with pytest.raises(ResultError, match="JSON cannot hold"):
        to_result(float("nan"), registered(json=True))


def test_a_wrong_return_type_fails_the_attempt_without_retry() -> None:
    task = claimed("send_email")
    outcome = outcome_of(task, registered("send_email"), value={"not": "bytes"})
    assert isinstance(outcome, FailedTask)
    assert outcome.error == (
        "ResultError: handler for 'send_email' returned dict; expected bytes, str or None "
        "(register it with json=True to return JSON values)"
    )
    assert outcome.retryable is False
    assert (outcome.task_id, outcome.lease_token) == (task.task_id, task.lease_token)


def test_a_result_is_a_completion_carrying_the_lease() -> None:
    task = claimed()
    outcome = outcome_of(task, registered(), value=b"done")
    assert outcome == CompletedTask(
        task_id=task.task_id, lease_token=task.lease_token, result=b"done"
    )


def test_exceptions_are_retryable_and_start_with_type_colon_message() -> None:
    outcome = outcome_of(claimed(), registered(), exc=ValueError("bad input"))
    assert isinstance(outcome, FailedTask)
    assert (outcome.error, outcome.retryable) == ("ValueError: bad input", True)
    assert outcome.retry_delay_seconds is None


def test_permanent_failure_and_its_subclasses_are_not_retryable() -> None:
    class Hopeless(PermanentFailure):
        pass

    for exc in (PermanentFailure("no such user"), Hopeless("gone")):
        outcome = outcome_of(claimed(), registered(), exc=exc)
        assert isinstance(outcome, FailedTask) and outcome.retryable is False
    assert headline(Hopeless("gone")) == "Hopeless: gone"


def test_retry_on_makes_other_exceptions_permanent() -> None:
    only_io = registered(retry_on=(OSError,))
    io_failure = outcome_of(claimed(), only_io, exc=ConnectionError("reset"))
    other = outcome_of(claimed(), only_io, exc=KeyError("sku"))
    assert isinstance(io_failure, FailedTask) and io_failure.retryable is True
    assert isinstance(other, FailedTask) and other.retryable is False
    single = registered(retry_on=TimeoutError)
    assert single.retry_on == (TimeoutError,)


def test_a_types_backoff_becomes_the_retry_delay_of_retryable_failures_only() -> None:
    slow = registered(backoff=(2, 30), retry_on=OSError)
    task = claimed(retry_count=3)
    outcome = outcome_of(task, slow, exc=OSError("down"))
    assert isinstance(outcome, FailedTask)
    assert outcome.retry_delay_seconds is not None and 8 <= outcome.retry_delay_seconds <= 16
    capped = outcome_of(claimed(retry_count=20), slow, exc=OSError("down"))
    assert isinstance(capped, FailedTask) and capped.retry_delay_seconds is not None
    assert 15 <= capped.retry_delay_seconds <= 30
    permanent = outcome_of(task, slow, exc=ValueError("bad"))
    assert isinstance(permanent, FailedTask) and permanent.retry_delay_seconds is None


def test_error_reports_stay_within_8_kib_and_empty_messages_show_the_type() -> None:
    text = error_report(RuntimeError("x" * 50_000))
    assert len(text.encode()) <= ERROR_MAX_BYTES and text.startswith("RuntimeError: xxx")
    assert error_report(KeyError()) == "KeyError"
    outcome = outcome_of(claimed(), registered(), exc=RuntimeError("é" * 20_000))
    assert isinstance(outcome, FailedTask) and len(outcome.error.encode()) <= ERROR_MAX_BYTES


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
    done = await wait_outcome(
        task, start_handler(worker.handlers["a"], b"ab", threads), 5, worker.handlers["a"]
    )
    assert isinstance(done, CompletedTask) and done.result == b"AB"
    done = await wait_outcome(
        task, start_handler(worker.handlers["s"], b"", threads), 5, worker.handlers["s"]
    )
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
    outcome = await wait_outcome(task, handle, 0.05, worker.handlers["slow"])
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
        claimed(),
        start_handler(worker.handlers["hang"], b"", threads),
        0.1,
        worker.handlers["hang"],
    )
    assert isinstance(outcome, FailedTask) and outcome.error.startswith("TimeoutError:")
    assert time.monotonic() - started < 5
    # The hung thread is still busy; another sync handler gets a thread of its own.
    outcome = await wait_outcome(
        claimed(),
        start_handler(worker.handlers["quick"], b"", threads),
        5,
        worker.handlers["quick"],
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
        assert await wait_outcome(claimed(), handle, 5, worker.handlers["quick"]) is not None
    assert threads.threads_started == 1


async def test_a_handle_cancelled_from_outside_has_no_outcome() -> None:
    worker = Worker()

    @worker.task("slow")
    async def slow(payload: bytes) -> bytes:
        await asyncio.sleep(60)
        return b""

    handle = start_handler(worker.handlers["slow"], b"", ThreadRunner())
    asyncio.get_running_loop().call_later(0.01, handle.cancel)
    assert await wait_outcome(claimed(), handle, 30, worker.handlers["slow"]) is None
