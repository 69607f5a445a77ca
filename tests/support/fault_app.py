"""The worker app of the process tiers (acceptance and chaos). Every handler run appends lines
to the execution log named by TQ_TEST_EXECUTION_LOG: `<event> <key> <run id> <pid> <unix time>`
with event `start`, then `end` or `fail` (none when the process died mid-run); `history.read_runs`
reads them back.

Payload: JSON {"key": str, "sleep": seconds, "fail_ratio": 0..1}. The result is the run id, so
a checker can tell which run's result the broker accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid

from tq_worker import Worker

worker = Worker()


def _log(event: str, key: str, run_id: str) -> None:
    line = f"{event} {key} {run_id} {os.getpid()} {time.time():.6f}\n"
    # One short O_APPEND write per line: lines from concurrent workers never interleave.
    with open(os.environ["TQ_TEST_EXECUTION_LOG"], "a", encoding="ascii") as log:
        log.write(line)


async def _run(payload: bytes) -> bytes:
    spec = json.loads(payload)
    run_id = uuid.uuid4().hex
    _log("start", spec["key"], run_id)
    await asyncio.sleep(float(spec.get("sleep", 0)))
    if random.random() < float(spec.get("fail_ratio", 0)):
        _log("fail", spec["key"], run_id)
        raise RuntimeError(f"run {run_id} fails on purpose")
    _log("end", spec["key"], run_id)
    return run_id.encode()


@worker.task("work")
async def work(payload: bytes) -> bytes:
    return await _run(payload)


@worker.task("chaos")
async def chaos(payload: bytes) -> bytes:
    return await _run(payload)


@worker.task("crash")
def crash(payload: bytes) -> bytes:
    """A poison task: takes its whole worker process down."""
    _log("start", json.loads(payload)["key"], uuid.uuid4().hex)
    os._exit(137)
