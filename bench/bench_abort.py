"""Abort latency: from `POST /api/v1/tasks/{id}/abort` to the handler seeing it
(CancelledError / ctx.cancelled) and to the task being `cancelled`, for a given heartbeat
interval. The worker learns of an abort on its next heartbeat, so the expected median is
about half an interval plus a request, and the worst case one interval.

    .venv/bin/python bench/bench_abort.py [--reps 20] [--intervals 2,5]

One fresh broker (embedded PostgreSQL) per interval, one worker (bench/abort_app.py) with
concurrency 1; aborts alternate between an async and a sync handler. Prints medians and p90.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from _common import Broker, environment, http_json, percentile, print_table, workers

POLL_SECONDS = 0.005


def wait_for(what: str, probe, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(POLL_SECONDS)
    raise TimeoutError(what)


def event_time(log: Path, event: str, task_id: str) -> float | None:
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        name, task, at = line.split()
        if name == event and task == task_id:
            return float(at)
    return None


def abort_once(url: str, log: Path, task_type: str, interval: float) -> tuple[float, float]:
    """Seconds from the abort request to the handler seeing it, and to `cancelled`. The abort
    waits a random part of a heartbeat interval after the start: without it the runs lock
    onto the heartbeat's phase (each one starts just after the beat that ended the last)."""
    task_id = http_json(url + "/api/v1/tasks", {"task_type": task_type})["task_id"]
    wait_for("start", lambda: event_time(log, "start", task_id))
    time.sleep(random.uniform(0, interval))
    sent = time.time()
    http_json(f"{url}/api/v1/tasks/{task_id}/abort", method="POST")
    seen = wait_for("seen", lambda: event_time(log, "seen", task_id))

    def cancelled() -> float | None:
        task = http_json(f"{url}/api/v1/tasks/{task_id}")
        return time.time() if task["status"] == "cancelled" else None

    return seen - sent, wait_for("cancelled", cancelled) - sent


def measure(interval: float, reps: int) -> tuple[list[float], list[float]]:
    log = Path(tempfile.mkdtemp(prefix="tq-bench-abort-")) / "events.log"
    env = {"TQ_HEARTBEAT_INTERVAL_SECONDS": str(interval), "TQ_METRICS_PORT": "0"}
    broker = Broker(env={**env, "TQ_GRPC_PORT": "0"}).start()  # other runs may hold ports
    try:
        os.environ["TQ_BENCH_ABORT_LOG"] = str(log)  # the worker inherits it
        with workers(broker.url, "abort_app:worker", concurrency=1):
            samples = [
                abort_once(
                    broker.url, log, "async_waits" if i % 2 == 0 else "sync_checks", interval
                )
                for i in range(reps)
            ]
    finally:
        broker.stop()
    return [seen for seen, _ in samples], [ended for _, ended in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--intervals", default="2,5", help="heartbeat intervals, seconds")
    args = parser.parse_args()
    print(environment())
    rows = []
    for interval in (float(x) for x in args.intervals.split(",")):
        seen, ended = measure(interval, args.reps)
        rows.append(
            [
                f"{interval:g}",
                f"{statistics.median(seen):.2f}",
                f"{percentile(seen, 90):.2f}",
                f"{statistics.median(ended):.2f}",
                f"{percentile(ended, 90):.2f}",
            ]
        )
    print_table(
        rows,
        ["heartbeat s", "abort→handler p50 s", "p90 s", "abort→cancelled p50 s", "p90 s"],
    )


if __name__ == "__main__":
    main()
