"""The REST client users import: `TaskQueueClient` (sync) and `AsyncTaskQueueClient` (async).

Owns the mapping from Python calls to the broker's REST routes and back, and from the broker's
error answers to the `TaskQueueError` hierarchy. Every route is described once, as a `Call`
(what request to send, which statuses succeed, how to parse the body); the two clients only
send it. The one thing not to break: sync and async share that description, so they can never
disagree about a route, and no broker error escapes as anything but a `TaskQueueError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, overload
from uuid import UUID

import httpx

from tq_client.calls import (
    DEFAULT_TIMEOUT_SECONDS,
    HEALTH,
    LIST_KEYS,
    STATS,
    WORKERS,
    Attempts,
    Call,
    Keys,
    Submitted,
    T,
    TaskSummaries,
    Workers,
    abort_call,
    attempts_call,
    cancel_call,
    client_options,
    create_key_call,
    get_call,
    list_call,
    queue_depth_call,
    requeue_call,
    revoke_key_call,
    submit_batch_call,
    submit_call,
)
from tq_client.errors import (  # re-exported: users catch them from here
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    TaskQueueError,
    Unauthorized,
    Unavailable,
    Unreachable,
    transport_error,
)
from tq_client.models import (
    PRIORITY_DEFAULT,
    AbortTaskResponse,
    CreatedKey,
    Health,
    QueueDepth,
    Stats,
    SubmitTaskRequest,
    SubmitTaskResponse,
    TaskDetail,
    TaskStatus,
)
from tq_client.payloads import NO_JSON
from tq_client.schedules import (
    TIMEZONE_DEFAULT,
    MissedFires,
    ScheduleInfo,
    Schedules,
    create_schedule_call,
    delete_schedule_call,
    get_schedule_call,
    list_schedules_call,
    update_schedule_call,
)
from tq_client.waiting import WaitPlan, WaitTimeout

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "AsyncTaskQueueClient",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "TaskQueueClient",
    "TaskQueueError",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "WaitTimeout",
]


class TaskQueueClient:
    """Blocking client over `httpx.Client`; use as a context manager or call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(**client_options(base_url, api_key, timeout), transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.send(call.request(self._http))
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise transport_error(self.base_url, exc) from exc
        return call.result(response)

    @overload
    def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        *,
        json: Any = NO_JSON,
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        wait: None = None,
    ) -> SubmitTaskResponse: ...

    @overload
    def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        *,
        json: Any = NO_JSON,
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        wait: float,
    ) -> TaskDetail: ...

    def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        *,
        json: Any = NO_JSON,
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> SubmitTaskResponse | TaskDetail:
        """Submit one task: `payload` bytes, or `json=` any JSON value (sent as UTF-8 JSON).

        Anything else as `payload` (a str, a dict) raises TypeError before a request is made.
        `timeout_seconds` / `max_retries` left out: the defaults its workers registered for the
        type (else 300 s and 3). A repeated `idempotency_key` with the same body returns the
        first task. With `wait=` seconds, waits for the task to finish and returns it (see
        `wait`); without, returns its id and status at once.
        """
        call = submit_call(
            task_type,
            payload,
            priority,
            schedule_at,
            timeout_seconds,
            max_retries,
            idempotency_key,
            json,
        )
        submitted = self._send(call)
        if wait is None:
            return submitted
        return self.wait(submitted.task_id, timeout=wait)

    def wait(self, task_id: UUID | str, timeout: float | None = None) -> TaskDetail:
        """The task once it is completed, dead_letter or cancelled; `WaitTimeout` (a
        TimeoutError carrying the task as last seen) if it is not within `timeout` seconds.
        `timeout=None` waits as long as it takes. Check `status`: a failed task is returned,
        not raised."""
        plan = WaitPlan(task_id, timeout)
        while True:
            try:
                task = self._send(plan.next_call())
            except Unavailable:
                pause = plan.retry_pause()
                if pause is None:
                    raise
                time.sleep(pause)
                continue
            if plan.finished(task):
                return task
            time.sleep(plan.pause())

    def submit_batch(self, tasks: Sequence[SubmitTaskRequest]) -> Submitted:
        """Submit 1-1000 tasks, all or none; answers in request order."""
        return self._send(submit_batch_call(tasks))

    def get(self, task_id: UUID | str) -> TaskDetail:
        return self._send(get_call(task_id))

    def attempts(self, task_id: UUID | str) -> Attempts:
        """Every attempt kept for the task (the last 50), oldest first, each with its error."""
        return self._send(attempts_call(task_id))

    def list(
        self,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> TaskSummaries:
        """Tasks newest first; the broker's default limit is 100."""
        return self._send(list_call(status, task_type, limit, offset))

    def cancel(self, task_id: UUID | str) -> None:
        """Cancel a pending (or retry-waiting) task; `Conflict` once it started."""
        self._send(cancel_call(task_id))

    def abort(self, task_id: UUID | str) -> AbortTaskResponse:
        """Cancel a waiting task now, or have its worker stop a running one (status stays
        `in_progress` until it has; it ends `cancelled`); `Conflict` once it finished."""
        return self._send(abort_call(task_id))

    def requeue(self, task_id: UUID | str) -> SubmitTaskResponse:
        """Move a dead-lettered task back to pending (admin)."""
        return self._send(requeue_call(task_id))

    def stats(self) -> Stats:
        return self._send(STATS)

    def workers(self) -> Workers:
        return self._send(WORKERS)

    def health(self) -> Health:
        """The broker's health; a degraded broker (503) is returned, not raised."""
        return self._send(HEALTH)

    def queue_depth(self, task_types: Iterable[str]) -> QueueDepth:
        return self._send(queue_depth_call(task_types))

    def create_key(
        self,
        name: str,
        permissions: Sequence[str],
        rate_limit: float | None = None,
        burst: int | None = None,
        max_pending: int | None = None,
    ) -> CreatedKey:
        """Create an API key (admin); the answer's `key` is the only copy of the secret."""
        return self._send(create_key_call(name, permissions, rate_limit, burst, max_pending))

    def list_keys(self) -> Keys:
        return self._send(LIST_KEYS)

    def revoke_key(self, key_id: UUID | str) -> None:
        self._send(revoke_key_call(key_id))

    def create_schedule(
        self,
        name: str,
        task_type: str,
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        timezone: str = TIMEZONE_DEFAULT,
        payload: bytes = b"",
        priority: int = PRIORITY_DEFAULT,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        paused: bool = False,
        missed_fires: MissedFires | str = MissedFires.FIRE_ONCE,
    ) -> ScheduleInfo:
        """A periodic schedule: one task per fire time of `cron` (5 fields, read in
        `timezone`) or every `interval_seconds`; `Conflict` if the name is taken."""
        return self._send(create_schedule_call(**_schedule_fields(locals())))

    def schedules(self, limit: int | None = None, offset: int | None = None) -> Schedules:
        return self._send(list_schedules_call(limit, offset))

    def get_schedule(self, name: str) -> ScheduleInfo:
        return self._send(get_schedule_call(name))

    def update_schedule(self, name: str, **changes: Any) -> ScheduleInfo:
        """Change the given fields (`paused=True` pauses; `cron=` or `interval_seconds=`
        replaces the timing)."""
        return self._send(update_schedule_call(name, **changes))

    def delete_schedule(self, name: str) -> None:
        self._send(delete_schedule_call(name))


class AsyncTaskQueueClient:
    """The same API over `httpx.AsyncClient`; use `async with` or `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        options = client_options(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(**options, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.send(call.request(self._http))
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise transport_error(self.base_url, exc) from exc
        return call.result(response)

    @overload
    async def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        *,
        json: Any = NO_JSON,
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        wait: None = None,
    ) -> SubmitTaskResponse: ...

    @overload
    async def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        *,
        json: Any = NO_JSON,
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        wait: float,
    ) -> TaskDetail: ...

    async def submit(
        self,
        task_type: str,
        payload: bytes = b"",
        *,
        json: Any = NO_JSON,
        priority: int = PRIORITY_DEFAULT,
        schedule_at: datetime | None = None,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
    ) -> SubmitTaskResponse | TaskDetail:
        """Submit one task: `payload` bytes, or `json=` any JSON value (sent as UTF-8 JSON).

        Anything else as `payload` (a str, a dict) raises TypeError before a request is made.
        `timeout_seconds` / `max_retries` left out: the defaults its workers registered for the
        type (else 300 s and 3). A repeated `idempotency_key` with the same body returns the
        first task. With `wait=` seconds, waits for the task to finish and returns it (see
        `wait`); without, returns its id and status at once.
        """
        call = submit_call(
            task_type,
            payload,
            priority,
            schedule_at,
            timeout_seconds,
            max_retries,
            idempotency_key,
            json,
        )
        submitted = await self._send(call)
        if wait is None:
            return submitted
        return await self.wait(submitted.task_id, timeout=wait)

    async def wait(
        self,
        task_id: UUID | str,
        timeout: float | None = None,  # noqa: ASYNC109 - as the sync client's: the broker holds it
    ) -> TaskDetail:
        """The task once it is completed, dead_letter or cancelled; `WaitTimeout` (a
        TimeoutError carrying the task as last seen) if it is not within `timeout` seconds.
        `timeout=None` waits as long as it takes. Check `status`: a failed task is returned,
        not raised."""
        plan = WaitPlan(task_id, timeout)
        while True:
            try:
                task = await self._send(plan.next_call())
            except Unavailable:
                pause = plan.retry_pause()
                if pause is None:
                    raise
                await asyncio.sleep(pause)
                continue
            if plan.finished(task):
                return task
            await asyncio.sleep(plan.pause())

    async def submit_batch(self, tasks: Sequence[SubmitTaskRequest]) -> Submitted:
        return await self._send(submit_batch_call(tasks))

    async def get(self, task_id: UUID | str) -> TaskDetail:
        return await self._send(get_call(task_id))

    async def attempts(self, task_id: UUID | str) -> Attempts:
        return await self._send(attempts_call(task_id))

    async def list(
        self,
        status: TaskStatus | str | None = None,
        task_type: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> TaskSummaries:
        return await self._send(list_call(status, task_type, limit, offset))

    async def cancel(self, task_id: UUID | str) -> None:
        await self._send(cancel_call(task_id))

    async def abort(self, task_id: UUID | str) -> AbortTaskResponse:
        return await self._send(abort_call(task_id))

    async def requeue(self, task_id: UUID | str) -> SubmitTaskResponse:
        return await self._send(requeue_call(task_id))

    async def stats(self) -> Stats:
        return await self._send(STATS)

    async def workers(self) -> Workers:
        return await self._send(WORKERS)

    async def health(self) -> Health:
        return await self._send(HEALTH)

    async def queue_depth(self, task_types: Iterable[str]) -> QueueDepth:
        return await self._send(queue_depth_call(task_types))

    async def create_key(
        self,
        name: str,
        permissions: Sequence[str],
        rate_limit: float | None = None,
        burst: int | None = None,
        max_pending: int | None = None,
    ) -> CreatedKey:
        return await self._send(create_key_call(name, permissions, rate_limit, burst, max_pending))

    async def list_keys(self) -> Keys:
        return await self._send(LIST_KEYS)

    async def revoke_key(self, key_id: UUID | str) -> None:
        await self._send(revoke_key_call(key_id))

    async def create_schedule(
        self,
        name: str,
        task_type: str,
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        timezone: str = TIMEZONE_DEFAULT,
        payload: bytes = b"",
        priority: int = PRIORITY_DEFAULT,
        timeout_seconds: int | None = None,
        max_retries: int | None = None,
        paused: bool = False,
        missed_fires: MissedFires | str = MissedFires.FIRE_ONCE,
    ) -> ScheduleInfo:
        return await self._send(create_schedule_call(**_schedule_fields(locals())))

    async def schedules(self, limit: int | None = None, offset: int | None = None) -> Schedules:
        return await self._send(list_schedules_call(limit, offset))

    async def get_schedule(self, name: str) -> ScheduleInfo:
        return await self._send(get_schedule_call(name))

    async def update_schedule(self, name: str, **changes: Any) -> ScheduleInfo:
        return await self._send(update_schedule_call(name, **changes))

    async def delete_schedule(self, name: str) -> None:
        await self._send(delete_schedule_call(name))


def _schedule_fields(arguments: dict[str, Any]) -> dict[str, Any]:
    """A create's arguments as the request's fields (the method's locals less `self`)."""
    return {key: value for key, value in arguments.items() if key != "self"}
