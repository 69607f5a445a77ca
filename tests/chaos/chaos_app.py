"""Handlers for the chaos run. Every run appends `start`/`end` lines to the execution log
named by TQ_TEST_EXECUTION_LOG: `<event> <key> <run id> <pid> <unix time>`.

Payload: JSON {"key": str, "sleep": seconds, "fail_ratio": 0..1}. The result is the run id,
so the checker can tell which run's result the broker accepted.
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


@worker.task("chaos")
async def chaos(payload: bytes) -> bytes:
    spec = json.loads(payload)
    run_id = uuid.uuid4().hex
    _log("start", spec["key"], run_id)
    await asyncio.sleep(float(spec.get("sleep", 0)))
    if random.random() < float(spec.get("fail_ratio", 0)):
        _log("fail", spec["key"], run_id)
        raise RuntimeError(f"chaos: run {run_id} fails on purpose")
    _log("end", spec["key"], run_id)
    return run_id.encode()
