"""Running one handler under a deadline and turning what it did into a wire outcome.

Owns the conversion rules: `None` -> b"", bytes -> result, anything else -> TypeError;
`PermanentFailure` -> not retryable; any other exception -> retryable, as
`ExceptionType: message` cut to the broker's 10,000 characters. The one thing not to break:
`wait_outcome` never waits past the deadline, whatever the handler does with cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, TypeAlias

from tq_client.protocol import ClaimedTask, CompletedTask, FailedTask
from tq_worker.app import PermanentFailure, Registered
from tq_worker.threads import ThreadRunner

Outcome: TypeAlias = CompletedTask | FailedTask
ERROR_MAX_CHARS = 10_000
_ELLIPSIS = "…"


def error_text(exc: BaseException) -> str:
    """`ExceptionType: message`, at most ERROR_MAX_CHARS characters."""
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return truncate(text)


def truncate(text: str, limit: int = ERROR_MAX_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def to_result(value: object, task_type: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    raise TypeError(
        f"handler for {task_type!r} returned {type(value).__name__}; expected bytes or None"
    )


def completed(task: ClaimedTask, result: bytes) -> CompletedTask:
    return CompletedTask(task_id=task.task_id, lease_token=task.lease_token, result=result)


def failed(task: ClaimedTask, error: str, retryable: bool = True) -> FailedTask:
    return FailedTask(
        task_id=task.task_id,
        lease_token=task.lease_token,
        error=truncate(error),
        retryable=retryable,
    )


def outcome_of(
    task: ClaimedTask, value: object = None, exc: BaseException | None = None
) -> Outcome:
    """What the handler's return value or exception means for the broker."""
    if exc is not None:
        return failed(task, error_text(exc), retryable=not isinstance(exc, PermanentFailure))
    try:
        return completed(task, to_result(value, task.task_type))
    except TypeError as type_error:
        return failed(task, error_text(type_error))


def timeout_error(timeout_seconds: int) -> str:
    return f"TimeoutError: the handler did not finish within timeout_seconds={timeout_seconds}"


async def _call_async(registered: Registered, payload: bytes) -> object:
    value: object = registered.handler(payload)
    if inspect.isawaitable(value):
        value = await value
    return value


def start_handler(
    registered: Registered, payload: bytes, threads: ThreadRunner
) -> asyncio.Future[Any]:
    """Start the handler: async ones as a task on this loop, sync ones on a daemon thread."""
    if registered.is_async:
        future: asyncio.Future[Any] = asyncio.ensure_future(_call_async(registered, payload))
    else:
        future = threads.submit(registered.handler, payload)
    future.add_done_callback(_consume)
    return future


def _consume(future: asyncio.Future[Any]) -> None:
    # A handler cancelled on timeout may still raise later; nobody awaits it, so retrieve the
    # exception here instead of letting asyncio log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


async def wait_outcome(
    task: ClaimedTask, handle: asyncio.Future[Any], limit_seconds: float
) -> Outcome | None:
    """The outcome of a started handler; None if `handle` was cancelled from outside.

    On timeout the handle is cancelled (an async handler gets CancelledError; a sync one keeps
    running on its thread, abandoned) and the task is reported failed without waiting for it.
    """
    try:
        done, _ = await asyncio.wait({handle}, timeout=max(0.0, limit_seconds))
    except asyncio.CancelledError:
        handle.cancel()
        raise
    if not done:
        handle.cancel()
        return failed(task, timeout_error(task.timeout_seconds))
    if handle.cancelled():
        return None
    exc = handle.exception()
    if exc is not None:
        return outcome_of(task, exc=exc)
    return outcome_of(task, value=handle.result())
