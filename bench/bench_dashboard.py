"""What the dashboard costs the broker at a large queue: the overview (uncached), the first page
of the task table, a filtered first page, a deep page, and /metrics' leader snapshot, with
N pending tasks (default 1,000,000) spread over 20 task types, plus 1% dead letters.

Numbers, not pass/fail. Each request is timed 5 times (the overview 5.2 s apart so its 5 s
cache never answers) and the median printed with the samples.

    .venv/bin/python bench/bench_dashboard.py [--tasks 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request

from _common import Broker, environment, fmt, print_table, write_result

SAMPLES = 5
OVERVIEW_CACHE_SECONDS = 5.2


def seed(broker: Broker, tasks: int) -> float:
    started = time.monotonic()
    broker.sql(
        f"""
        INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds,
                              max_retries, created_at, status, finished_at)
        SELECT gen_random_uuid(), 'type_' || (n % 20), '\\x00', n % 256, 300, 3,
               now() - n * interval '1 millisecond',
               CASE WHEN n % 100 = 0 THEN 'dead_letter' ELSE 'pending' END,
               CASE WHEN n % 100 = 0 THEN now() END
        FROM generate_series(1, {tasks}) AS n
        """,
        "VACUUM ANALYZE tq_tasks",
    )
    return time.monotonic() - started


def timed(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    broker = Broker(env={"TQ_METRICS_REFRESH_SECONDS": "5"}).start()
    try:
        seed_seconds = seed(broker, args.tasks)
        print(f"seeded {args.tasks:,} tasks in {seed_seconds:.1f} s")
        requests = {
            "overview (uncached)": ("/api/v1/overview", OVERVIEW_CACHE_SECONDS),
            "task table, first page": ("/api/v1/tasks?limit=51", 0.0),
            "pending of one type, first page": (
                "/api/v1/tasks?status=pending&task_type=type_7&limit=51",
                0.0,
            ),
            "dead letters, first page": ("/api/v1/tasks?status=dead_letter&limit=51", 0.0),
            "task table, page 1000": ("/api/v1/tasks?limit=51&offset=50000", 0.0),
            "/metrics": ("/metrics", 0.0),
        }
        rows, summary = [], {}
        for name, (path, pause) in requests.items():
            samples = []
            for _ in range(SAMPLES):
                time.sleep(pause)
                samples.append(timed(broker.url + path))
            median = statistics.median(samples)
            summary[name] = {"median_s": median, "samples_s": samples}
            rows.append([name, fmt(median * 1000), " ".join(fmt(s * 1000) for s in samples)])
        print_table(rows, ["request", "median ms", "samples ms"])
        write_result(
            "dashboard", {"tasks": args.tasks, "results": summary, "environment": environment()}
        )
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
