"""Demo handlers, for trying the queue and for tests: `tq-worker --app tq_worker.demo:worker`.

The one thing not to break: these names and behaviours (noop, echo, sleep, fail) are used by
the tests, the benchmark and the README; `send_email` makes the contract's curl example
complete.
"""

from __future__ import annotations

import asyncio

from tq_worker.app import PermanentFailure, Worker

worker = Worker()


@worker.task("noop")
async def noop(payload: bytes) -> bytes:
    return b""


@worker.task("echo")
async def echo(payload: bytes) -> bytes:
    return payload


@worker.task("sleep")
async def sleep(payload: bytes) -> bytes:
    """Payload: seconds as ASCII, e.g. b"0.5"."""
    try:
        seconds = float(payload.decode("ascii") or "0")
    except (UnicodeDecodeError, ValueError) as exc:
        raise PermanentFailure(f"sleep wants ASCII seconds, got {payload[:40]!r}") from exc
    await asyncio.sleep(seconds)
    return b""


@worker.task("fail")
def fail(payload: bytes) -> bytes:
    raise RuntimeError("demo failure")


@worker.task("send_email")
async def send_email(payload: bytes) -> bytes:
    """The contract's example task: pretends to send to the address in the payload."""
    return b"sent to " + payload
