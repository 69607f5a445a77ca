"""Cost per task, measured: broker CPU, PostgreSQL CPU, worker CPU, WAL bytes, commits, and the
heap and index bytes a task leaves in `tq_tasks` — the inputs of docs/scaling.md.

One broker (embedded, durable PostgreSQL, auth off), three phases, each bracketed by a CHECKPOINT
(so every phase starts with the same full-page-write state) and by readings of:
  - CPU seconds (/proc, via psutil) of the broker process, of every PostgreSQL process (backends,
    WAL writer, checkpointer, autovacuum: all children of the postmaster) and of the workers;
  - `pg_current_wal_lsn()` (WAL bytes) and `pg_stat_wal` (records, full-page images);
  - `pg_stat_database.xact_commit` of the queue's database;
  - `pg_relation_size` of `tq_tasks` and of each of its indexes.

Phases:
  single  --single-clients keep-alive clients POST /api/v1/tasks for --single-seconds;
  batch   --tasks tasks through POST /api/v1/tasks/batch (1000 a request, 2 in flight);
  drain   --workers tq-worker processes (--concurrency each) claim and complete every pending
          task (both phases' tasks): the claim + complete side of a task's life;
  cleanup the retention sweep's statement (queries.sql `task_delete_finished`, 1000 a batch)
          deletes every finished task: the end of a task's life. Its CPU is PostgreSQL's only
          (run from this script, as the leader's cleaner would run it).

    .venv/bin/python bench/bench_cost.py [--tasks 50000] [--single-seconds 10] [--workers 2]

Writes results/<name>.json (--results-dir to put it elsewhere). Per-task numbers divide a
phase's totals by the tasks it moved; the background work of the phase (WAL writer,
checkpointer, autovacuum, the broker's leader loops) is charged to the tasks, as it would be in
production.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    Broker,
    RawHttpClient,
    environment,
    loadavg,
    postgres_processes,
    run_raw_load,
    snapshot_sources,
    uptime,
    worker_available,
    workers,
)

TASK_TYPE = "t0000"


def cpu_seconds(procs: list[Any]) -> dict[int, float]:
    out: dict[int, float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except Exception:  # a process that left: its time is gone either way
            continue
    return out


class Reading:
    """Counters at one moment; `minus` gives a phase's deltas."""

    def __init__(self, broker: Broker, groups: dict[str, list[Any]]) -> None:
        self.t = time.monotonic()
        self.cpu = {name: cpu_seconds(procs) for name, procs in groups.items()}
        lsn, records, fpi, wal_bytes, commits, heap, rows = broker.sql(
            "SELECT pg_current_wal_lsn()::text",
            "SELECT wal_records FROM pg_stat_wal",
            "SELECT wal_fpi FROM pg_stat_wal",
            "SELECT wal_bytes::bigint FROM pg_stat_wal",
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            "SELECT pg_relation_size('tq_tasks')",
            "SELECT count(*) FROM tq_tasks",
        )
        self.lsn = lsn[0][0]
        self.wal_records, self.wal_fpi = int(records[0][0]), int(fpi[0][0])
        self.wal_stat_bytes = int(wal_bytes[0][0])
        self.commits = int(commits[0][0])
        self.heap_bytes, self.rows = int(heap[0][0]), int(rows[0][0])
        self.index_bytes = {
            name: int(size)
            for name, size in broker.sql(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)"
                " FROM pg_index WHERE indrelid = 'tq_tasks'::regclass ORDER BY 1"
            )[0]
        }
        self._broker = broker

    def minus(self, before: Reading, tasks: int) -> dict[str, Any]:
        wal = int(
            self._broker.sql(f"SELECT pg_wal_lsn_diff('{self.lsn}', '{before.lsn}')")[0][0][0]
        )
        wall = self.t - before.t
        cpu = {}
        for name, now in self.cpu.items():
            was = before.cpu.get(name, {})
            cpu[name] = sum(v - was.get(pid, 0.0) for pid, v in now.items())
        index_delta = {k: v - before.index_bytes.get(k, 0) for k, v in self.index_bytes.items()}
        per = max(tasks, 1)
        return {
            "tasks": tasks,
            "wall_seconds": round(wall, 3),
            "tasks_per_s": round(tasks / wall, 1) if wall > 0 else None,
            "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
            "cpu_pct_of_core": {k: round(100 * v / wall, 1) for k, v in cpu.items()},
            "wal_bytes": wal,
            "wal_records": self.wal_records - before.wal_records,
            "wal_fpi": self.wal_fpi - before.wal_fpi,
            "commits": self.commits - before.commits,
            "heap_bytes_after": self.heap_bytes,
            "index_bytes_after": self.index_bytes,
            "rows_after": self.rows,
            "per_task": {
                **{f"{k}_cpu_us": round(1e6 * v / per, 1) for k, v in cpu.items()},
                "wal_bytes": round(wal / per, 1),
                "wal_records": round((self.wal_records - before.wal_records) / per, 2),
                "wal_fpi": round((self.wal_fpi - before.wal_fpi) / per, 3),
                "commits": round((self.commits - before.commits) / per, 3),
                "heap_bytes_growth": round((self.heap_bytes - before.heap_bytes) / per, 1),
                "index_bytes_growth": round(sum(index_delta.values()) / per, 1),
                "index_bytes_growth_each": {k: round(v / per, 1) for k, v in index_delta.items()},
            },
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    broker = Broker().start()
    try:
        assert broker.proc is not None
        bp = psutil.Process(broker.proc.pid)
        worker_procs: list[Any] = []

        def groups() -> dict[str, list[Any]]:
            return {
                "broker": [bp],
                "postgres": postgres_processes(bp.pid),
                "workers": list(worker_procs),
            }

        phases: dict[str, Any] = {}
        drain_workers_cpu: dict[int, float] = {}

        def measure(name: str, action: Any) -> None:
            broker.sql("CHECKPOINT")
            load = loadavg()
            before = Reading(broker, groups())
            tasks = action()
            after = Reading(broker, groups())
            phases[name] = {**after.minus(before, tasks), "loadavg_before": load}
            if name == "drain":  # the workers have exited: their CPU was read just before
                workers_s = sum(drain_workers_cpu.values())
                phases[name]["cpu_seconds"]["workers"] = round(workers_s, 3)
                phases[name]["cpu_pct_of_core"]["workers"] = round(
                    100 * workers_s / phases[name]["wall_seconds"], 1
                )
                phases[name]["per_task"]["workers_cpu_us"] = round(
                    1e6 * workers_s / max(tasks, 1), 1
                )
            per = phases[name]["per_task"]
            print(
                f"  {name}: {tasks:,} tasks in {phases[name]['wall_seconds']} s; per task: broker "
                f"{per['broker_cpu_us']} us, postgres {per['postgres_cpu_us']} us, workers "
                f"{per['workers_cpu_us']} us CPU; WAL {per['wal_bytes']} B "
                f"({per['wal_records']} records, {per['wal_fpi']} FPI); commits {per['commits']};"
                f" heap +{per['heap_bytes_growth']} B, indexes +{per['index_bytes_growth']} B"
                f" | load {load} -> {loadavg()}",
                flush=True,
            )

        host = broker.url.removeprefix("http://")
        body = json.dumps({"task_type": TASK_TYPE, "payload": base64.b64encode(b"x" * 21).decode()})
        raw = RawHttpClient.build("POST", "/api/v1/tasks", host, body.encode())

        def single() -> int:
            out = run_raw_load(
                broker.url,
                lambda _i: raw,
                args.single_clients,
                args.single_seconds,
                expect=(201,),
            )
            return int(out["ok"])

        def batch() -> int:
            from concurrent.futures import ThreadPoolExecutor

            from _common import http_json

            p64 = base64.b64encode(b"x" * 21).decode()

            def one(start: int) -> int:
                k = min(1000, args.tasks - start)
                tasks = [{"task_type": TASK_TYPE, "payload": p64}] * k
                answer = http_json(broker.url + "/api/v1/tasks/batch", {"tasks": tasks})
                return len(answer["tasks"])

            with ThreadPoolExecutor(2) as pool:
                return sum(pool.map(one, range(0, args.tasks, 1000)))

        def drain() -> int:
            pending = int(
                broker.sql("SELECT count(*) FROM tq_tasks WHERE status = 'pending'")[0][0][0]
            )
            with workers(
                broker.url,
                "curves_app:worker",
                args.workers,
                args.concurrency,
                None,
                broker.tmp,
                env={"TQ_BENCH_TYPES": TASK_TYPE},
            ) as procs:
                worker_procs.extend(psutil.Process(p.pid) for p in procs)
                # Only the time they work: the reading before already ran; start-up CPU (imports)
                # is charged too, which --tasks large enough makes small.
                deadline = time.monotonic() + args.drain_timeout
                while time.monotonic() < deadline:
                    # Two partial-index probes, not a count: the poll's cost is charged too.
                    busy = broker.sql(
                        "SELECT EXISTS (SELECT 1 FROM tq_tasks WHERE status IN"
                        " ('pending', 'failed')) OR EXISTS (SELECT 1 FROM tq_tasks"
                        " WHERE status = 'in_progress')"
                    )[0][0][0]
                    if not busy:
                        break
                    time.sleep(0.5)
                # Read before the workers exit, so their CPU is still there to read.
                drain_workers_cpu.update(cpu_seconds(list(worker_procs)))
            return pending

        def cleanup() -> int:
            """The retention sweep's own statement (queries.sql task_delete_finished, batches
            of 1000, as the leader's cleaner runs it), retention 0: every finished task."""
            import psycopg

            from tq_broker.queries import queries

            statement = queries()["task_delete_finished"]
            deleted = 0
            with psycopg.connect(broker.database_url(), autocommit=True) as conn:
                while True:
                    cur = conn.execute(statement, {"retention_seconds": 0, "batch_size": 1000})
                    if cur.rowcount <= 0:
                        return deleted
                    deleted += cur.rowcount

        measure("single", single)
        measure("batch", batch)
        measure("drain", drain)
        after_drain = dict(broker.sql("SELECT status, count(*) FROM tq_tasks GROUP BY 1")[0])
        measure("cleanup", cleanup)
        statuses = dict(broker.sql("SELECT status, count(*) FROM tq_tasks GROUP BY 1")[0])
        settings = dict(
            broker.sql(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync',"
                " 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers',"
                " 'checkpoint_timeout', 'max_wal_size', 'server_version')"
            )[0]
        )
    finally:
        broker.stop()
    return {
        "phases": phases,
        "statuses_after_drain": after_drain,
        "final_statuses": statuses,
        "postgres_settings": settings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000, help="tasks of the batch phase")
    parser.add_argument("--single-seconds", type=float, default=10.0)
    parser.add_argument("--single-clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-snapshot", action="store_true", help="run the live tree")
    parser.add_argument("--name", default="cost")
    args = parser.parse_args()

    env = environment()
    env["code"] = snapshot_sources(not args.no_snapshot)
    if not worker_available():
        print("tq-worker is not available; nothing to run", file=sys.stderr)
        return 2
    print(f"bench_cost\n  {env['uptime_at_start']}", flush=True)
    result = run(args)
    summary = {
        "benchmark": "bench_cost",
        "command": "bench/bench_cost.py " + " ".join(sys.argv[1:]),
        "environment": env,
        "uptime_at_end": uptime(),
        "config": {k: str(v) for k, v in vars(args).items()},
        **result,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{args.name}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(
        f"  statuses after the drain: {result['statuses_after_drain']}; at the end: "
        f"{result['final_statuses']}\n  {summary['uptime_at_end']}"
    )
    print(f"  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
