"""Registering handlers: JSON handlers, `ctx`, per-type options and what is refused at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tq_client.protocol import ClaimedTask, CompletedTask, FailedTask, TaskTypeOptions
from tq_worker import RetryBackoff, TaskContext, Worker
from tq_worker.execution import new_context, start_handler, wait_outcome
from tq_worker.ledger import Held, StopReason
from tq_worker.task_log import outcome_name, will_retry
from tq_worker.threads import ThreadRunner


def claimed(payload: bytes, retry_count: int = 0, max_retries: int = 3) -> ClaimedTask:
    return ClaimedTask(
        task_id=uuid.uuid4(),
        task_type="t",
        payload=payload,
        priority=100,
        lease_token=uuid.uuid4(),
        lease_expires_at=datetime.now(UTC),
        timeout_seconds=60,
        retry_count=retry_count,
        max_retries=max_retries,
    )


async def run(worker: Worker, task: ClaimedTask) -> CompletedTask | FailedTask | None:
    registered = worker.handlers[task.task_type]
    ctx = new_context(task, 60)
    handle = start_handler(registered, task.payload, ThreadRunner(), ctx)
    return await wait_outcome(task, handle, 30, registered)


async def test_a_json_handler_gets_the_decoded_value_and_its_return_is_encoded() -> None:
    worker = Worker()

    @worker.task("t", json=True)
    async def resize(job: dict[str, Any]) -> dict[str, Any]:
        return {"width": job["width"] // 2, "seen": job}

    outcome = await run(worker, claimed(b'{"width": 640}'))
    assert isinstance(outcome, CompletedTask)
    assert outcome.result == b'{"width":320,"seen":{"width":640}}'


async def test_a_payload_that_is_not_json_fails_a_json_handler_without_retry() -> None:
    worker = Worker()
    calls: list[object] = []
    worker.task("t", json=True)(calls.append)
    outcome = await run(worker, claimed(b"\xff not json"))
    assert isinstance(outcome, FailedTask) and outcome.retryable is False
    assert outcome.error.startswith("InputError: payload of 't' is not JSON")
    assert calls == []
    empty = await run(worker, claimed(b""))
    assert isinstance(empty, CompletedTask) and calls == [None]


@pytest.mark.parametrize("is_async", [True, False])
async def test_a_handler_declaring_ctx_gets_the_attempt_and_deadline(is_async: bool) -> None:
    worker = Worker()
    seen: list[TaskContext] = []

    if is_async:

        @worker.task("t")
        async def handler(payload: bytes, ctx: TaskContext) -> str:
            seen.append(ctx)
            return f"attempt {ctx.attempt}"

    else:

        @worker.task("t")
        def handler(payload: bytes, ctx: TaskContext) -> str:
            seen.append(ctx)
            return f"attempt {ctx.attempt}"

    task = claimed(b"", retry_count=2, max_retries=3)
    outcome = await run(worker, task)
    assert isinstance(outcome, CompletedTask) and outcome.result == b"attempt 3"
    (ctx,) = seen
    assert (ctx.task_id, ctx.task_type, ctx.attempt, ctx.max_retries) == (task.task_id, "t", 3, 3)
    assert not ctx.is_last_attempt and not ctx.cancelled
    assert datetime.now(UTC) < ctx.deadline <= datetime.now(UTC) + timedelta(seconds=61)
    assert 0 < ctx.remaining_seconds() <= 60


def test_ctx_is_found_by_name_and_other_signatures_are_refused_at_registration() -> None:
    worker = Worker()
    worker.task("plain")(lambda payload: None)
    worker.task("keyword")(lambda payload, *, ctx: None)
    worker.task("defaulted")(lambda payload, extra=1: None)
    assert not worker.handlers["plain"].wants_ctx
    assert worker.handlers["keyword"].wants_ctx
    assert not worker.handlers["defaulted"].wants_ctx
    with pytest.raises(TypeError, match=r"cannot be called as \(payload\)"):
        worker.task("two")(lambda payload, other: None)
    with pytest.raises(TypeError, match=r"cannot be called as \(payload\)"):
        worker.task("none")(lambda: None)


def test_return_annotations_the_wire_cannot_carry_are_refused_unless_json() -> None:
    worker = Worker()

    def fine(payload: bytes) -> bytes | str | None:
        return None

    async def also_fine(payload: bytes) -> str:
        return ""

    def counts(payload: bytes) -> dict[str, int]:
        return {}

    def number(payload: bytes) -> int | None:
        return 1

    worker.task("fine")(fine)
    worker.task("also_fine")(also_fine)
    with pytest.raises(TypeError, match=r"annotated to return .*dict.*json=True"):
        worker.task("counts")(counts)
    with pytest.raises(TypeError, match=r"annotated to return int"):
        worker.task("number")(number)
    worker.task("json_counts", json=True)(counts)
    assert worker.task_types == ["also_fine", "fine", "json_counts"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be an integer from 0 to 100"),
        ({"max_retries": 101}, "max_retries must be"),
        ({"max_retries": True}, "max_retries must be"),
        ({"timeout_seconds": 0}, "timeout_seconds must be an integer from 1 to 86400"),
        ({"timeout_seconds": 1.5}, "timeout_seconds must be"),
        ({"backoff": (10, 1)}, "backoff needs 0 <= base_seconds <= cap_seconds"),
        ({"backoff": (1,)}, "backoff takes RetryBackoff"),
        ({"retry_on": ValueError("x")}, "retry_on takes exception classes"),
        ({"retry_on": (ValueError, int)}, "retry_on takes exception classes"),
    ],
)
def test_options_out_of_range_are_refused_at_registration(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        Worker().task("t", **options)


def test_task_options_hold_the_types_that_set_defaults() -> None:
    worker = Worker()
    worker.task("a", max_retries=5)(lambda payload: None)
    worker.task("b")(lambda payload: None)
    worker.task("c", timeout_seconds=30, backoff=RetryBackoff(1, 60))(lambda payload: None)
    assert worker.task_options == {
        "a": TaskTypeOptions(max_retries=5),
        "c": TaskTypeOptions(timeout_seconds=30),
    }
    assert worker.handlers["c"].backoff == RetryBackoff(1.0, 60.0)


def test_the_log_line_names_how_the_attempt_ended() -> None:
    task = claimed(b"", retry_count=0, max_retries=1)
    done = CompletedTask(task_id=task.task_id, lease_token=task.lease_token)
    failure = FailedTask(task_id=task.task_id, lease_token=task.lease_token, error="x")
    permanent = FailedTask(
        task_id=task.task_id, lease_token=task.lease_token, error="x", retryable=False
    )
    assert outcome_name(Held(task, 0.0), done) == "completed"
    assert (outcome_name(Held(task, 0.0), failure), will_retry(Held(task, 0.0), failure)) == (
        "failed",
        True,
    )
    assert will_retry(Held(task, 0.0), permanent) is False
    last = claimed(b"", retry_count=1, max_retries=1)
    assert will_retry(Held(last, 0.0), failure) is False
    assert outcome_name(Held(task, 0.0, stop_reason=StopReason.ABORTED), failure) == "aborted"
    assert outcome_name(Held(task, 0.0, stop_reason=StopReason.ABANDONED), None) == "abandoned"
