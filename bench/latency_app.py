"""Bench app for submit -> handler-start latency: `tq-worker --app latency_app:worker` (run
from bench/, or with bench/ on PYTHONPATH).

`stamp` returns the wall-clock time at which the handler started, as ASCII; the benchmark
compares it with the time the submit request was sent (same machine, same clock).
"""

from __future__ import annotations

import time

from tq_worker import Worker

worker = Worker()


@worker.task("stamp")
async def stamp(payload: bytes) -> bytes:
    return str(time.time()).encode()


@worker.task("stamp_sync")
def stamp_sync(payload: bytes) -> bytes:
    """The same from a sync handler (runs on the worker's thread pool)."""
    return str(time.time()).encode()
