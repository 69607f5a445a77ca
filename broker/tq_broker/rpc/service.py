"""The seven rpcs of `taskqueue.v1.TaskQueue`, on the same store, event hub and API keys as REST.

Each rpc runs inside `_Call`, which authenticates (metadata `authorization: Bearer <key>`),
checks the permission, spends a rate-limit token, and maps the broker's exceptions to gRPC
status codes through `error_codes.ERROR_CODES`, the table REST answers from too.

The one thing not to break: nothing here decides what REST would decide differently. Inputs go
through `convert` into the REST models, state changes through `TaskStore`; a stream is the
EventHub's best-effort live feed, never a replacement for reading the task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc

from tq_broker.api.tasks import IDEMPOTENCY_KEY_PATTERN
from tq_broker.auth import (
    Authenticator,
    Credentials,
    OpenStreams,
    Principal,
    RateLimited,
    StreamKey,
    actor_of,
    submitter_of,
)
from tq_broker.error_codes import codes_of
from tq_broker.errors import (
    BrokerError,
    InvalidRequest,
    StoreUnavailable,
)
from tq_broker.events import EventHub, Subscription, TaskEvent
from tq_broker.keys import Permission
from tq_broker.rpc import convert
from tq_broker.rpc import taskqueue_pb2 as pb
from tq_broker.rpc.taskqueue_pb2_grpc import TaskQueueServicer
from tq_broker.task_store import TaskStore
from tq_client.models import TERMINAL_STATUSES, TaskDetail

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]

# A one-task stream re-reads its task this often, covering events dropped by a NOTIFY that
# failed (or sent before the stream was live).
RECHECK_SECONDS = 5.0
_WAKE = TaskEvent("", "", "", "")  # put into a stream's queue to make it notice shutdown
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


SUBSCRIBED_METADATA = "tq-subscribed"


def metadata(context: Context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


async def abort(context: Context, exc: BrokerError) -> None:
    code = grpc.StatusCode[codes_of(exc)[1]]
    trailers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, RateLimited):
        trailers = (("retry-after", str(exc.decision.retry_after_seconds)),)
    elif isinstance(exc, StoreUnavailable):
        trailers = (("retry-after", "1"),)
    await context.abort(code, str(exc), trailers)


class _Call:
    """`async with`: authorize on entry; on exit, turn broker errors into status codes."""

    def __init__(self, auth: Authenticator, context: Context, permission: Permission) -> None:
        self._auth = auth
        self._context = context
        self._permission = permission
        self.principal: Principal | None = None  # None with auth off

    async def __aenter__(self) -> _Call:
        if not self._auth.config.enabled:
            return self
        credentials = Credentials(header=metadata(self._context, "authorization"))
        try:
            self.principal = (await self._auth.authorize(credentials, self._permission)).principal
        except BrokerError as exc:
            await abort(self._context, exc)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, BrokerError):
            await abort(self._context, exc)
        if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
            log.error("unhandled error in an rpc", exc_info=exc)
            await self._context.abort(grpc.StatusCode.INTERNAL, "internal server error")


@dataclass(frozen=True)
class _Stream:
    subscription: Subscription
    context: Context
    key: StreamKey


class TaskQueueService(TaskQueueServicer):
    def __init__(
        self,
        store: TaskStore,
        hub: EventHub,
        auth: Authenticator,
        open_streams: OpenStreams,
    ) -> None:
        self._store = store
        self._hub = hub
        self._auth = auth
        self._open_streams = open_streams
        self._closing = False
        self._streams: set[Subscription] = set()

    def close(self) -> None:
        """End open streams (UNAVAILABLE: reconnect, to another replica) before the server stops."""
        self._closing = True
        for subscription in self._streams:
            if not subscription.queue.full():  # a full queue wakes its stream anyway
                subscription.queue.put_nowait(_WAKE)

    def _call(self, context: Context, permission: Permission) -> _Call:
        return _Call(self._auth, context, permission)

    async def SubmitTask(
        self, request: pb.SubmitTaskRequest, context: Context
    ) -> pb.SubmitTaskResponse:
        async with self._call(context, Permission.SUBMIT_TASKS) as call:
            key = metadata(context, "idempotency-key")
            if key is not None and not IDEMPOTENCY_KEY_PATTERN.match(key):
                raise InvalidRequest("idempotency-key: 1-255 printable ASCII without spaces")
            submitted = await self._store.task_insert(
                convert.submit_request(request), key, submitter_of(call.principal)
            )
            return pb.SubmitTaskResponse(
                task_id=str(submitted.task.task_id), status=submitted.task.status.value
            )

    async def GetTaskStatus(self, request: pb.GetTaskStatusRequest, context: Context) -> pb.Task:
        async with self._call(context, Permission.READ_TASKS):
            task = await self._store.task_get(convert.task_id(request.task_id))
            return convert.task_message(task)

    async def CancelTask(
        self, request: pb.CancelTaskRequest, context: Context
    ) -> pb.CancelTaskResponse:
        async with self._call(context, Permission.CANCEL_TASKS):
            task_id = convert.task_id(request.task_id)
            await self._store.task_cancel(task_id)
            return pb.CancelTaskResponse(task_id=str(task_id), status="cancelled")

    async def AbortTask(
        self, request: pb.AbortTaskRequest, context: Context
    ) -> pb.AbortTaskResponse:
        async with self._call(context, Permission.CANCEL_TASKS) as call:
            task_id = convert.task_id(request.task_id)
            aborted = await self._store.task_abort(task_id, actor_of(call.principal))
            return convert.abort_response(aborted)

    async def ListTasks(
        self, request: pb.ListTasksRequest, context: Context
    ) -> pb.ListTasksResponse:
        async with self._call(context, Permission.READ_TASKS):
            query = convert.list_query(request)
            tasks = await self._store.task_list(
                query.status, query.task_type, query.limit, query.offset
            )
            return pb.ListTasksResponse(tasks=[convert.task_message(t) for t in tasks])

    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.Stats:
        async with self._call(context, Permission.READ_TASKS):
            return convert.stats_message(await self._store.stats())

    async def StreamTaskUpdates(
        self, request: pb.StreamTaskUpdatesRequest, context: Context
    ) -> AsyncIterator[pb.TaskUpdate]:
        async with self._call(context, Permission.READ_TASKS) as call:
            with self._open_streams.opened(call.principal):
                async for update in self._stream(request, context, call.principal):
                    yield update

    async def _stream(
        self, request: pb.StreamTaskUpdatesRequest, context: Context, principal: Principal | None
    ) -> AsyncIterator[pb.TaskUpdate]:
        """The updates of one StreamTaskUpdates call, once its key and cap were checked."""
        key = StreamKey(self._auth, principal)
        query = convert.stream_query(request)
        # A one-task stream filters statuses itself: it must see the terminal one to end.
        statuses = () if query.task_id else query.statuses
        task_ids = {str(query.task_id)} if query.task_id else query.task_ids
        subscription = self._hub.subscribe(query.task_types, statuses, task_ids)
        self._streams.add(subscription)
        try:
            # Live from here on: every change that commits after the client has this
            # initial metadata reaches the stream (see events.py).
            if await self._hub.registered():
                await context.send_initial_metadata(((SUBSCRIBED_METADATA, "true"),))
            updates = self._task_updates if query.task_id else self._all_updates
            async for update in updates(_Stream(subscription, context, key), query):
                yield update
        finally:
            self._streams.discard(subscription)
            self._hub.unsubscribe(subscription)

    async def _next(self, stream: _Stream, within: float | None = None) -> TaskEvent:
        """The next event; ends the stream when the broker stops, the subscriber was dropped,
        or its key was revoked. TimeoutError after `within` seconds without one."""
        subscription, context = stream.subscription, stream.context
        deadline = None if within is None else time.monotonic() + within
        while True:
            wait = stream.key.interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            try:
                event = await asyncio.wait_for(subscription.queue.get(), wait)
            except TimeoutError:
                if not await stream.key.still_valid():
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "API key revoked")
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            break
        if not await stream.key.still_valid():
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "API key revoked")
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "broker shutting down; reconnect")
        if subscription.dropped:  # it fell a whole queue behind: end it, do not drain
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "subscriber too slow; reconnect"
            )
        return event

    async def _all_updates(
        self, stream: _Stream, query: convert.StreamQuery
    ) -> AsyncIterator[pb.TaskUpdate]:
        while True:
            yield convert.update_message(await self._next(stream))

    async def _task_updates(
        self, stream: _Stream, query: convert.StreamQuery
    ) -> AsyncIterator[pb.TaskUpdate]:
        """The task's current status, then its changes, until it is finished."""
        assert query.task_id is not None
        task_id = str(query.task_id)
        current = _event_of(await self._store.task_get(query.task_id))
        recheck_at = time.monotonic() + RECHECK_SECONDS
        last: datetime | None = None
        while True:
            if current.task_id == task_id and (last is None or convert.event_time(current) > last):
                last = convert.event_time(current)
                if _wanted(query, current):
                    yield convert.update_message(current)
                if current.status in _TERMINAL:
                    return
            try:
                current = await self._next(stream, recheck_at - time.monotonic())
            except TimeoutError:
                current = _event_of(await self._store.task_get(query.task_id))
                recheck_at = time.monotonic() + RECHECK_SECONDS


def _wanted(query: convert.StreamQuery, event: TaskEvent) -> bool:
    return (not query.task_types or event.task_type in query.task_types) and (
        not query.statuses or event.status in query.statuses
    )


def _event_of(task: TaskDetail) -> TaskEvent:
    progress = task.progress
    return TaskEvent.from_row(
        {
            "task_id": task.task_id,
            "task_type": task.task_type,
            "status": task.status.value,
            "updated_at": task.updated_at,
            "progress_fraction": progress.fraction if progress else None,
            "progress_message": progress.message if progress else None,
            "progress_updated_at": progress.updated_at if progress else None,
            "aborted_at": task.aborted_at,
            "aborted_by": task.aborted_by,
        }
    )
