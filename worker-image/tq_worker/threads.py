"""Daemon threads that run sync handlers: idle threads are reused, a busy pool grows.

Not `concurrent.futures.ThreadPoolExecutor`, on purpose: its threads are joined at interpreter
exit and its size is fixed, so one sync handler that never returns would block the process
from exiting and, once timed out and abandoned, would keep a slot forever. The one thing not to
break: a handler that hangs costs one thread, never a slot of the worker or its exit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

IDLE_THREAD_SECONDS_DEFAULT = 60.0


@dataclass(frozen=True)
class _Call:
    fn: Callable[[bytes], Any]
    arg: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class ThreadRunner:
    """`submit(fn, arg)` runs `fn(arg)` on a daemon thread; the future resolves on the loop."""

    def __init__(self, idle_seconds: float = IDLE_THREAD_SECONDS_DEFAULT) -> None:
        self._idle_seconds = idle_seconds
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Waiting threads not yet promised to a queued call; a thread may exit only if > 0.
        self._idle = 0
        self._started = 0

    @property
    def threads_started(self) -> int:
        return self._started

    def submit(self, fn: Callable[[bytes], Any], arg: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._calls.put(_Call(fn, arg, loop, future))
        if spawn:
            self._started += 1
            name = f"tq-handler-{self._started}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        return
                continue
            value, exc = _run(call)
            # Idle before the loop hears of the result, so its next submit can reuse us.
            with self._lock:
                self._idle += 1
            _resolve(call, value, exc)


def _run(call: _Call) -> tuple[Any, BaseException | None]:
    try:
        return call.fn(call.arg), None
    except BaseException as exc:  # everything goes back to the loop
        return None, exc


def _resolve(call: _Call, value: Any, exc: BaseException | None) -> None:
    def settle() -> None:
        if call.future.done():  # cancelled: timed out or abandoned; nobody wants the result
            return
        if exc is not None:
            call.future.set_exception(exc)
        else:
            call.future.set_result(value)

    try:
        call.loop.call_soon_threadsafe(settle)
    except RuntimeError:
        log.debug("event loop closed before a sync handler returned")
