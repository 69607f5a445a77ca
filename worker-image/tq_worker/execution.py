"""Running one handler under a deadline and turning what it did into a wire outcome.

Owns the conversion rules. In: the payload bytes, or with `json=True` the decoded value (a
payload that is not JSON fails the attempt without retry). Out: without `json=True`, `None` ->
b"", bytes -> result, str -> its UTF-8; with it, the JSON encoding of any value. A value the
wire cannot carry fails the attempt without retry — running the handler again would return
the same. Exceptions: `PermanentFailure`, and with `retry_on` anything not listed, are not
retryable; the error is `failures.error_report` (type, message, bounded traceback) and a
type's own `backoff` adds `retry_delay_seconds`. The one thing not to break: `wait_outcome`
never waits past the deadline, whatever the handler does with cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, TypeAlias

from tq_client.payloads import decode_json, encode_json
from tq_client.protocol import ClaimedTask, CompletedTask, FailedTask
from tq_worker.app import PermanentFailure, Registered
from tq_worker.context import TaskContext
from tq_worker.failures import error_report, headline, truncate
from tq_worker.retries import is_retryable
from tq_worker.threads import ThreadRunner

Outcome: TypeAlias = CompletedTask | FailedTask


class InputError(PermanentFailure):
    """The payload is not what the handler was registered to take (not JSON)."""


class ResultError(PermanentFailure):
    """The handler returned a value its registration cannot put on the wire."""


def to_result(value: object, registered: Registered) -> bytes:
    """The result bytes of a handler's return value; ResultError if it has none."""
    if registered.json:
        try:
            return encode_json(value)
        except (TypeError, ValueError) as exc:
            raise ResultError(
                f"handler for {registered.task_type!r} returned a value JSON cannot hold: {exc}"
            ) from None
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise ResultError(
        f"handler for {registered.task_type!r} returned {type(value).__name__}; expected "
        "bytes, str or None (register it with json=True to return JSON values)"
    )


def handler_input(registered: Registered, payload: bytes) -> Any:
    """What the handler is called with: the bytes, or the decoded JSON value."""
    if not registered.json:
        return payload
    try:
        return decode_json(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"payload of {registered.task_type!r} is not JSON: {exc}") from None


def completed(task: ClaimedTask, result: bytes) -> CompletedTask:
    return CompletedTask(task_id=task.task_id, lease_token=task.lease_token, result=result)


def failed(
    task: ClaimedTask, error: str, retryable: bool = True, retry_delay: float | None = None
) -> FailedTask:
    return FailedTask(
        task_id=task.task_id,
        lease_token=task.lease_token,
        error=truncate(error),
        retryable=retryable,
        retry_delay_seconds=retry_delay if retryable else None,
    )


def failure_of(task: ClaimedTask, registered: Registered | None, exc: BaseException) -> FailedTask:
    """The report of an attempt that raised `exc`: retryable per the type's rules."""
    retry_on = registered.retry_on if registered is not None else None
    retryable = is_retryable(exc, retry_on, PermanentFailure)
    if isinstance(exc, (InputError, ResultError)):
        error = headline(exc)  # our own refusal: the runtime's frames would only confuse
    else:
        error = error_report(exc, _source_file(registered.handler) if registered else None)
    delay = None
    if retryable and registered is not None and registered.backoff is not None:
        delay = registered.backoff.delay(task.retry_count)
    return failed(task, error, retryable=retryable, retry_delay=delay)


def outcome_of(
    task: ClaimedTask,
    registered: Registered,
    value: object = None,
    exc: BaseException | None = None,
) -> Outcome:
    """What the handler's return value or exception means for the broker."""
    if exc is not None:
        return failure_of(task, registered, exc)
    try:
        return completed(task, to_result(value, registered))
    except ResultError as refusal:
        return failure_of(task, registered, refusal)


def timeout_failure(task: ClaimedTask, registered: Registered | None) -> FailedTask:
    """The worker gave up at the deadline: retryable (like a lease the broker rescues)."""
    delay = None
    if registered is not None and registered.backoff is not None:
        delay = registered.backoff.delay(task.retry_count)
    return failed(task, timeout_error(task.timeout_seconds), retry_delay=delay)


def timeout_error(timeout_seconds: int) -> str:
    return f"TimeoutError: the handler did not finish within timeout_seconds={timeout_seconds}"


def new_context(task: ClaimedTask, remaining_seconds: float) -> TaskContext:
    return TaskContext(
        task_id=task.task_id,
        task_type=task.task_type,
        attempt=task.retry_count + 1,
        max_retries=task.max_retries,
        timeout_seconds=task.timeout_seconds,
        remaining_seconds=remaining_seconds,
    )


def _call(registered: Registered, payload: bytes, ctx: TaskContext | None) -> Any:
    argument = handler_input(registered, payload)
    if registered.wants_ctx:
        return registered.handler(argument, ctx=ctx)
    return registered.handler(argument)


async def _call_async(registered: Registered, payload: bytes, ctx: TaskContext | None) -> object:
    value: object = _call(registered, payload, ctx)
    if inspect.isawaitable(value):
        value = await value
    return value


def start_handler(
    registered: Registered,
    payload: bytes,
    threads: ThreadRunner,
    ctx: TaskContext | None = None,
) -> asyncio.Future[Any]:
    """Start the handler: async ones as a task on this loop, sync ones on a daemon thread."""
    if registered.is_async:
        future: asyncio.Future[Any] = asyncio.ensure_future(_call_async(registered, payload, ctx))
    else:
        future = threads.submit(lambda data: _call(registered, data, ctx), payload)
    future.add_done_callback(_consume)
    return future


def _consume(future: asyncio.Future[Any]) -> None:
    # A handler cancelled on timeout may still raise later; nobody awaits it, so retrieve the
    # exception here instead of letting asyncio log "exception was never retrieved".
    if not future.cancelled():
        future.exception()


def _source_file(handler: Any) -> str | None:
    """The file the handler was written in, for keeping its frames in a cut traceback."""
    target = getattr(handler, "func", handler)  # functools.partial
    if not inspect.isroutine(target):
        target = getattr(target, "__call__", target)  # noqa: B004 - a callable object
    code = getattr(target, "__code__", None)
    return code.co_filename if code is not None else None


async def wait_outcome(
    task: ClaimedTask,
    handle: asyncio.Future[Any],
    limit_seconds: float,
    registered: Registered,
    until: asyncio.Future[None] | None = None,
) -> Outcome | None:
    """The outcome of a started handler; None if `handle` was cancelled from outside, or
    `until` resolved first (the worker gave up on an aborted handler; it may still run).

    On timeout the handle is cancelled (an async handler gets CancelledError; a sync one keeps
    running on its thread, abandoned) and the task is reported failed without waiting for it.
    """
    waits = {handle} if until is None else {handle, until}
    try:
        done, _ = await asyncio.wait(
            waits, timeout=max(0.0, limit_seconds), return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:
        handle.cancel()
        raise
    if not done:
        handle.cancel()
        return timeout_failure(task, registered)
    if not handle.done() or handle.cancelled():
        return None
    exc = handle.exception()
    return outcome_of(task, registered, value=handle.result() if exc is None else None, exc=exc)
