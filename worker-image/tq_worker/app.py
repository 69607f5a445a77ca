"""The task SDK: a `Worker` is a registry of handlers by task type, `@worker.task("name")`.

    @worker.task("resize", json=True, max_retries=5, retry_on=(IOError,), backoff=(2, 300))
    async def resize(job: dict, ctx: TaskContext) -> dict: ...

A handler takes the payload (bytes, or with `json=True` the decoded JSON value) and, if it
declares a parameter named `ctx`, a `TaskContext`. Without `json=True` it returns bytes, str
(sent as UTF-8) or None; with it, anything JSON can hold. Everything that can be checked is
checked here, at registration — a signature that cannot take the payload, options out of the
broker's ranges, a return annotation that promises a type the wire cannot carry — so that a
mistake fails `tq-worker` at start, not a task after its side effects ran. The one thing not
to break: how a handler is called (`is_async`, `wants_ctx`, `json`) is fixed at registration.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from tq_client.models import TASK_TYPE_PATTERN
from tq_client.protocol import TaskTypeOptions
from tq_worker.retries import RetryBackoff, backoff_of

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

_TASK_TYPE = re.compile(TASK_TYPE_PATTERN)
# The broker's ranges for the per-type defaults a worker registers (SubmitTaskRequest's).
MAX_RETRIES_RANGE = (0, 100)
TIMEOUT_SECONDS_RANGE = (1, 86_400)
# What a handler registered without json=True may return (None is an empty result).
RETURNABLE: tuple[type, ...] = (bytes, bytearray, memoryview, str, type(None))
CTX_PARAMETER = "ctx"


class PermanentFailure(Exception):
    """Raise from a handler to dead-letter the task now, whatever retries it has left."""


@dataclass(frozen=True)
class Registered:
    """A handler and how to call it: fixed at registration."""

    task_type: str
    handler: Handler
    is_async: bool
    json: bool = False
    wants_ctx: bool = False
    max_retries: int | None = None
    timeout_seconds: int | None = None
    # None: every exception is retried; else only these (others dead-letter at once).
    retry_on: tuple[type[BaseException], ...] | None = None
    backoff: RetryBackoff | None = None


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

    def task(
        self,
        task_type: str,
        *,
        json: bool = False,
        max_retries: int | None = None,
        timeout_seconds: int | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        backoff: RetryBackoff | tuple[float, float] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated function as the handler of `task_type`; returns it unchanged.

        `max_retries` and `timeout_seconds` are this type's defaults: the worker registers
        them with the broker, which applies them to submits that leave them out. `retry_on`
        limits retries to those exception types; `backoff` (base, cap seconds) sets the wait
        before each retry to min(cap, base * 2^retry) with jitter, instead of the broker's.
        """
        if not _TASK_TYPE.fullmatch(task_type):
            raise ValueError(f"invalid task type {task_type!r}: must match {TASK_TYPE_PATTERN}")
        _check_range("max_retries", max_retries, MAX_RETRIES_RANGE)
        _check_range("timeout_seconds", timeout_seconds, TIMEOUT_SECONDS_RANGE)
        retry_types = _retry_types(retry_on)
        retry_backoff = backoff_of(backoff)

        def register(handler: H) -> H:
            if task_type in self._handlers:
                raise ValueError(f"task type {task_type!r} already has a handler")
            if not callable(handler):
                raise TypeError(f"handler for {task_type!r} is not callable")
            wants_ctx = _check_signature(task_type, handler)
            if not json:
                _check_return_annotation(task_type, handler)
            self._handlers[task_type] = Registered(
                task_type=task_type,
                handler=handler,
                is_async=is_async_callable(handler),
                json=json,
                wants_ctx=wants_ctx,
                max_retries=max_retries,
                timeout_seconds=timeout_seconds,
                retry_on=retry_types,
                backoff=retry_backoff,
            )
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

    @property
    def task_options(self) -> dict[str, TaskTypeOptions]:
        """The per-type defaults to register with the broker (types that set any)."""
        return {
            name: TaskTypeOptions(
                max_retries=handler.max_retries, timeout_seconds=handler.timeout_seconds
            )
            for name, handler in sorted(self._handlers.items())
            if handler.max_retries is not None or handler.timeout_seconds is not None
        }

    def __repr__(self) -> str:
        return f"Worker(task_types={self.task_types})"


def _check_range(name: str, value: int | None, bounds: tuple[int, int]) -> None:
    if value is None:
        return
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _retry_types(
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None,
) -> tuple[type[BaseException], ...] | None:
    if retry_on is None:
        return None
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"retry_on takes exception classes, got {kind!r}")
    return kinds


def _check_signature(task_type: str, handler: Handler) -> bool:
    """The handler must take the payload positionally; True if it also wants `ctx`."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return False  # a builtin without a signature: called with the payload alone
    wants_ctx = CTX_PARAMETER in signature.parameters
    try:
        if wants_ctx:
            signature.bind(None, **{CTX_PARAMETER: None})
        else:
            signature.bind(None)
    except TypeError as exc:
        shape = "(payload, ctx)" if wants_ctx else "(payload)"
        raise TypeError(
            f"handler for {task_type!r} cannot be called as {shape}: {exc}; "
            f"declare one payload parameter (and optionally `{CTX_PARAMETER}`)"
        ) from None
    return wants_ctx


def _check_return_annotation(task_type: str, handler: Handler) -> None:
    """Refuse a return annotation outside bytes | str | None (without json=True)."""
    target = handler if inspect.isroutine(handler) else getattr(handler, "__call__", handler)  # noqa: B004
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: nothing to check
        return
    if "return" not in hints:
        return
    bad = _unreturnable(hints["return"])
    if bad:
        raise TypeError(
            f"handler for {task_type!r} is annotated to return {', '.join(bad)}; a handler "
            "returns bytes, str or None — register it with json=True to return JSON values"
        )


def _unreturnable(annotation: Any) -> list[str]:
    """The parts of a return annotation the wire cannot carry (empty: fine or unknowable)."""
    if annotation is None or annotation is Any or annotation is object:
        return []
    if isinstance(annotation, TypeVar):
        return []
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return [bad for arg in typing.get_args(annotation) for bad in _unreturnable(arg)]
    if origin in (Awaitable, Coroutine):  # a sync callable that returns an awaitable
        args = typing.get_args(annotation)
        return _unreturnable(args[-1]) if args else []
    if isinstance(annotation, type):
        return [] if issubclass(annotation, RETURNABLE) else [annotation.__name__]
    if origin is not None and isinstance(origin, type):
        return [] if issubclass(origin, RETURNABLE) else [str(annotation)]
    return []  # Literal, NewType, Annotated…: not worth guessing
