"""Handlers for the fault tests. Each run appends `start`/`end` lines to the execution log
named by TQ_TEST_EXECUTION_LOG, so the checker can see every attempt, whoever ran it.

Payload: JSON {"key": str, "sleep": seconds}. Result: `<pid>` of the process that ran it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from tq_worker import Worker

worker = Worker()


def _log(event: str, key: str) -> None:
    line = f"{event} {key} {os.getpid()} {time.time():.6f}\n"
    with open(os.environ["TQ_TEST_EXECUTION_LOG"], "a", encoding="ascii") as log:
        log.write(line)
        log.flush()


@worker.task("work")
async def work(payload: bytes) -> bytes:
    spec = json.loads(payload)
    _log("start", spec["key"])
    await asyncio.sleep(float(spec.get("sleep", 0)))
    _log("end", spec["key"])
    return str(os.getpid()).encode()


@worker.task("crash")
def crash(payload: bytes) -> bytes:
    """A poison task: takes its whole worker process down."""
    _log("start", json.loads(payload)["key"])
    os._exit(137)
