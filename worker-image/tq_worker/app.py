"""The task SDK: a `Worker` is a registry of handlers by task type, `@worker.task("name")`.

The one thing not to break: a handler's contract is `payload: bytes -> bytes | None`, sync or
async; the runtime decides how to call it from `Registered.is_async`, fixed at registration.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from tq_client.models import TASK_TYPE_PATTERN

SyncHandler: TypeAlias = Callable[[bytes], bytes | None]
AsyncHandler: TypeAlias = Callable[[bytes], Awaitable[bytes | None]]
Handler: TypeAlias = SyncHandler | AsyncHandler
H = TypeVar("H", bound=Handler)

_TASK_TYPE = re.compile(TASK_TYPE_PATTERN)


class PermanentFailure(Exception):
    """Raise from a handler to dead-letter the task now, whatever retries it has left."""


@dataclass(frozen=True)
class Registered:
    task_type: str
    handler: Handler
    is_async: bool


def is_async_callable(handler: object) -> bool:
    """True for `async def` functions, partials of them and objects with an async __call__."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the method, not callable()
    return call is not None and inspect.iscoroutinefunction(call)


class Worker:
    """Handlers by task type. `tq-worker --app module:attr` runs one of these."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registered] = {}

    def task(self, task_type: str) -> Callable[[H], H]:
        """Register the decorated function as the handler of `task_type`; returns it unchanged."""
        if not _TASK_TYPE.fullmatch(task_type):
            raise ValueError(f"invalid task type {task_type!r}: must match {TASK_TYPE_PATTERN}")

        def register(handler: H) -> H:
            if task_type in self._handlers:
                raise ValueError(f"task type {task_type!r} already has a handler")
            if not callable(handler):
                raise TypeError(f"handler for {task_type!r} is not callable")
            self._handlers[task_type] = Registered(task_type, handler, is_async_callable(handler))
            return handler

        return register

    @property
    def handlers(self) -> Mapping[str, Registered]:
        return dict(self._handlers)

    @property
    def task_types(self) -> list[str]:
        return sorted(self._handlers)

    def get(self, task_type: str) -> Registered | None:
        return self._handlers.get(task_type)

    def __repr__(self) -> str:
        return f"Worker(task_types={self.task_types})"
