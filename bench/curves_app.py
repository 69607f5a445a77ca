"""Bench app for the scaling curves: `tq-worker --app curves_app:worker` (run from bench/, or
with bench/ on PYTHONPATH).

One no-op handler registered under every task type named in `TQ_BENCH_TYPES` (comma-separated;
default `t0000`), so a curve can choose which of the table's task types its workers take. A
worker registers at most 100 types (the protocol's cap).
"""

from __future__ import annotations

import os

from tq_worker import Worker

worker = Worker()


async def _noop(payload: bytes) -> bytes:
    return b""


for _task_type in os.environ.get("TQ_BENCH_TYPES", "t0000").split(","):
    if _task_type.strip():
        worker.task(_task_type.strip())(_noop)
