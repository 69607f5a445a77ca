"""Where one PostgreSQL stops scaling for single submits: commits/s of one-row insert
transactions into `tq_tasks` from 1..N concurrent sessions, durable (fsync and synchronous_commit
on), in two modes:

- `notify_in_commit`: each transaction also NOTIFYs, as the insert trigger did before
  migration 0013;
- `announced_after` (as the broker runs since 0013): the inserts notify nobody, and one more
  session sends NOTIFYs back to back with `synchronous_commit = off`, as a replica's
  `ReadyAnnouncer` does at most.

Why: PostgreSQL serialises the commits of every transaction that issued a NOTIFY on one lock,
held from just before the commit until after its WAL flush (async.c `PreCommit_Notify`,
"Serialize writers by acquiring a special lock that we hold till after commit"). Such commits
cannot share a WAL flush (group commit), so their rate is bounded by one flush at a time, however
many cores and sessions there are. Without NOTIFY, concurrent commits share flushes.

Talks to PostgreSQL directly (the embedded server of a broker started for it, which idles), so
the broker's own CPU is not in these numbers.

    .venv/bin/python bench/bench_commit_ceiling.py [--sessions 1,4,16] [--seconds 5]

Writes results/<name>.json (--results-dir to put it elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, Broker, environment, loadavg, snapshot_sources, uptime

INSERT = (
    "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds, max_retries)"
    " VALUES (%s, 'ceiling', '\\x00', 100, 60, 0)"
)


NOTIFY = "SELECT pg_notify('tq_task_ready', 'ceiling 1')"
MODES = ("notify_in_commit", "announced_after")


def run_point(url: str, sessions: int, seconds: float, mode: str) -> dict[str, Any]:
    import psycopg

    counts = [0] * sessions
    announcements = [0]
    stop_at = 0.0
    start = threading.Barrier(sessions + 1 + (mode == "announced_after"))
    errors: list[str] = []

    def session(i: int) -> None:
        try:
            with psycopg.connect(url) as conn:
                start.wait()
                while time.monotonic() < stop_at:
                    conn.execute(INSERT, (uuid.uuid4(),))
                    if mode == "notify_in_commit":
                        conn.execute(NOTIFY)
                    conn.commit()
                    counts[i] += 1
        except Exception as exc:  # reported, not raised: the other sessions' numbers stand
            errors.append(repr(exc)[:200])

    def announcer() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET synchronous_commit = off")
                start.wait()
                while time.monotonic() < stop_at:
                    conn.execute(NOTIFY)
                    announcements[0] += 1
        except Exception as exc:
            errors.append(repr(exc)[:200])

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    if mode == "announced_after":
        threads.append(threading.Thread(target=announcer, daemon=True))
    for t in threads:
        t.start()
    stop_at = time.monotonic() + seconds + 30  # provisional, until every session connected
    start.wait()
    t0 = time.monotonic()
    stop_at = t0 + seconds
    for t in threads:
        t.join(seconds + 60)
    wall = time.monotonic() - t0
    return {
        "sessions": sessions,
        "commits": sum(counts),
        "commits_per_s": round(sum(counts) / wall, 1),
        "announcements_per_s": round(announcements[0] / wall, 1),
        "errors": errors[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-snapshot", action="store_true", help="run the live tree")
    parser.add_argument("--name", default="commit_ceiling")
    args = parser.parse_args()
    env = environment()
    env["code"] = snapshot_sources(not args.no_snapshot)
    print(f"bench_commit_ceiling\n  {env['uptime_at_start']}", flush=True)
    points = []
    with Broker() as broker:
        url = broker.database_url()
        for sessions in [int(s) for s in args.sessions.split(",") if s.strip()]:
            # Alternated per session count, so drifting load hits both modes alike.
            for mode in MODES:
                load = loadavg()
                point = {"mode": mode, **run_point(url, sessions, args.seconds, mode)}
                point["loadavg_before"] = load
                points.append(point)
                print(
                    f"  {mode:16} x{sessions:<3}: {point['commits_per_s']:,.0f} commits/s"
                    f"{' errors ' + str(point['errors']) if point['errors'] else ''} | load {load}",
                    flush=True,
                )
        settings = dict(
            broker.sql(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('fsync', 'synchronous_commit', 'commit_delay', 'wal_sync_method')"
            )[0]
        )
    summary = {
        "benchmark": "bench_commit_ceiling",
        "command": "bench/bench_commit_ceiling.py " + " ".join(sys.argv[1:]),
        "environment": env,
        "uptime_at_end": uptime(),
        "postgres_settings": settings,
        "points": points,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{args.name}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"  {summary['uptime_at_end']}\n  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
