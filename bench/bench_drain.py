"""Worker-path benchmark: drain throughput, submit -> handler-start latency, peak RSS.

  (a) drain: enqueue 20,000 `noop` tasks (batch endpoint), start tq-worker process(es) with a
      given concurrency / prefetch, poll GET /api/v1/stats until pending == in_progress == 0.
      Rate = tasks / (drain seen - first claim). Also reported: the rate including worker
      start-up (from process launch) and the database's own window (first claimed_at to last
      finished_at).
  (b) latency: one idle worker running bench/latency_app.py; 500 `stamp` tasks submitted one at
      a time, 20 ms apart; each handler returns time.time() at its start, so
      latency = handler start - the moment the submit request was sent.
  (c) peak RSS of the broker process, the worker process(es) and PostgreSQL (sum of its
      processes; shared buffers are counted in each) sampled every 50 ms during (a).

Each repetition starts a fresh broker (embedded, durable PostgreSQL). Median of --reps.

    .venv/bin/python bench/bench_drain.py [--reps 3] [--configs 1x64,2x128p256] [--skip-latency]

A config is WORKERSxCONCURRENCY[pPREFETCH], e.g. 2x128p256: two worker processes, each with
--concurrency 128 --prefetch 256 (default prefetch: the worker's own, = concurrency).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from _common import (
    Broker,
    CpuMeter,
    RawHttpClient,
    RssSampler,
    environment,
    fmt,
    http_json,
    loadavg,
    percentile,
    postgres_processes,
    print_table,
    run_async,
    snapshot_sources,
    submit_batch,
    uptime,
    worker_available,
    workers,
    write_result,
)

TARGETS = {"drain_tasks_per_s": 5000.0, "latency_p50_ms": 5.0, "latency_p99_ms": 20.0}
DEFAULT_CONFIGS = "1x16,1x64,1x256,1x64p512,2x128"


@dataclass(frozen=True)
class Config:
    workers: int
    concurrency: int
    prefetch: int | None

    @classmethod
    def parse(cls, text: str) -> Config:
        m = re.fullmatch(r"(\d+)x(\d+)(?:p(\d+))?", text.strip())
        if not m:
            raise ValueError(f"bad config {text!r}: want WORKERSxCONCURRENCY[pPREFETCH]")
        return cls(int(m[1]), int(m[2]), int(m[3]) if m[3] else None)

    def __str__(self) -> str:
        p = f"p{self.prefetch}" if self.prefetch is not None else ""
        return f"{self.workers}x{self.concurrency}{p}"


def _stats(url: str) -> dict[str, Any]:
    result: dict[str, Any] = http_json(url + "/api/v1/stats")
    return result


def _db_window(broker: Broker, task_type: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(broker.database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(claimed_at))::float8,"
            "       extract(epoch FROM max(finished_at))::float8,"
            "       count(*) FILTER (WHERE status = 'completed'),"
            "       count(*) FILTER (WHERE status <> 'completed')"
            " FROM tq_tasks WHERE task_type = %s",
            (task_type,),
        ).fetchone()
    assert row is not None
    return {"first_claim": row[0], "last_finish": row[1], "completed": row[2], "other": row[3]}


def _count_requests(broker: Broker) -> dict[str, int]:
    """Requests per method+path in the broker's access log (only with --count-requests)."""
    assert broker.tmp is not None
    counts: dict[str, int] = {}
    for line in (broker.tmp / "broker.log").read_text(errors="replace").splitlines():
        m = re.search(r'"(GET|POST|DELETE) (/[^ ?]*)[^"]*" (\d+)', line)
        if m:
            path = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", m[2])
            path = re.sub(r"/workers/[^/]+/", "/workers/{id}/", path)
            key = f"{m[1]} {path} {m[3]}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _broker(args: argparse.Namespace) -> Broker:
    return Broker(
        env={"TQ_ACCESS_LOG": "true"} if args.count_requests else {},
        keep_dir=args.count_requests,
        role_settings={"synchronous_commit": "off"} if args.sync_commit_off else {},
        log_statement_durations=args.pg_durations,
    )


def drain_once(cfg: Config, rep: int, args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    n, poll, count_requests = args.tasks, args.poll, args.count_requests
    with _broker(args) as broker:
        t0 = time.monotonic()
        submit_batch(broker.url, "noop", n)
        enqueue_s = time.monotonic() - t0
        if args.analyze:
            broker.sql("ANALYZE tq_tasks")  # diagnostic: fresh planner statistics
        bp = psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
        load_before = loadavg()
        worker_procs: list[Any] = []

        def worker_group() -> list[Any]:
            return worker_procs

        rss = RssSampler(
            {
                "broker": lambda: [bp],
                "workers": worker_group,
                "postgres": lambda: postgres_processes(bp.pid),
            }
        )
        cpu = CpuMeter(
            {
                "broker": lambda: [bp],
                "workers": worker_group,
                "postgres": lambda: postgres_processes(bp.pid),
            }
        )
        rss.start()
        launch_wall = time.time()
        with workers(
            broker.url,
            "tq_worker.demo:worker",
            cfg.workers,
            cfg.concurrency,
            cfg.prefetch,
            broker.tmp,
        ) as procs:
            worker_procs.extend(psutil.Process(p.pid) for p in procs)
            cpu.start()
            deadline = time.monotonic() + 600
            polls = 0
            while time.monotonic() < deadline:
                s = _stats(broker.url)
                polls += 1
                if s["pending_count"] == 0 and s["in_progress_count"] == 0:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker exited early; see its log in " + str(broker.tmp))
                time.sleep(poll)
            done_wall = time.time()
            cpu_use = cpu.stop()
        rss.stop()
        window = _db_window(broker, "noop")
        requests = _count_requests(broker) if count_requests else None
        pg = broker.pg_durations() if args.pg_durations else None
    if pg is not None:
        for kind, v in pg.items():
            print(f"    pg {kind}: {v}")
    if requests is not None:
        import shutil

        shutil.rmtree(broker.tmp, ignore_errors=True)  # type: ignore[arg-type]
        print("    requests:", json.dumps(requests, sort_keys=True))
    first_claim = window["first_claim"] or launch_wall
    drain_s = done_wall - first_claim
    db_s = (window["last_finish"] or done_wall) - first_claim
    result = {
        "rep": rep,
        "config": str(cfg),
        "tasks": n,
        "enqueue_s": round(enqueue_s, 3),
        "enqueue_tasks_per_s": round(n / enqueue_s, 1),
        "worker_startup_s": round(first_claim - launch_wall, 3),
        "drain_s": round(drain_s, 3),
        "drain_tasks_per_s": n / drain_s,
        "drain_incl_startup_tasks_per_s": n / (done_wall - launch_wall),
        "db_window_tasks_per_s": n / db_s if db_s > 0 else float("nan"),
        "completed": window["completed"],
        "not_completed": window["other"],
        "stats_polls": polls,
        "requests": requests,
        "pg_durations": pg,
        "cpu": cpu_use,
        "peak_rss_mib": {k: round(v, 1) for k, v in rss.peak_mib.items()},
        "peak_rss_largest_process_mib": {k: round(v, 1) for k, v in rss.peak_each_mib.items()},
        "rss_samples": rss.samples,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(
        f"  {cfg} rep {rep}: {fmt(result['drain_tasks_per_s'])} tasks/s "
        f"(incl. startup {fmt(result['drain_incl_startup_tasks_per_s'])}, db window "
        f"{fmt(result['db_window_tasks_per_s'])}), completed {window['completed']}/{n}, "
        f"cpu broker {cpu_use['broker_cpu_pct']}% workers {cpu_use['workers_cpu_pct']}% "
        f"pg {cpu_use['postgres_cpu_pct']}%, RSS broker {result['peak_rss_mib']['broker']} MiB "
        f"workers {result['peak_rss_mib']['workers']} MiB | load {loadavg()}",
        flush=True,
    )
    return result


def latency_once(rep: int, args: argparse.Namespace) -> dict[str, Any]:
    count, spacing, task_type = (
        args.latency_count,
        args.latency_spacing_ms / 1000,
        args.latency_task,
    )
    with _broker(args) as broker:
        with workers(broker.url, "latency_app:worker", 1, 8, None, broker.tmp) as procs:
            deadline = time.monotonic() + 60
            while _stats(broker.url)["worker_count"] < 1:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError("latency worker did not register")
                time.sleep(0.1)
            time.sleep(1.0)  # let it settle into its long-poll
            load_before = loadavg()
            host = f"127.0.0.1:{broker.port}"
            body = json.dumps({"task_type": task_type}).encode()
            raw = RawHttpClient.build("POST", "/api/v1/tasks", host, body)

            async def submit_all() -> list[tuple[str, float, float]]:
                client = RawHttpClient("127.0.0.1", broker.port)
                await client.connect()
                out = []
                next_at = time.perf_counter()
                for _ in range(count):
                    sent = time.time()
                    status, answer = await client.request(raw)
                    acked = time.time()
                    if status != 201:
                        raise RuntimeError(f"submit answered {status}: {answer[:200]!r}")
                    out.append((json.loads(answer)["task_id"], sent, acked))
                    next_at += spacing
                    import asyncio

                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                await client.close()
                return out

            submitted = run_async(submit_all())
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                s = _stats(broker.url)
                if s["pending_count"] == 0 and s["in_progress_count"] == 0:
                    break
                time.sleep(0.1)
        pg = broker.pg_durations() if args.pg_durations else None
        if pg is not None:
            for kind, v in pg.items():
                print(f"    pg {kind}: {v}")
        latencies, acks, after_ack, missing = [], [], [], 0
        for task_id, sent, acked in submitted:
            detail = http_json(f"{broker.url}/api/v1/tasks/{task_id}")
            if detail["status"] != "completed" or not detail.get("result"):
                missing += 1
                continue
            started = float(base64.b64decode(detail["result"]))
            latencies.append((started - sent) * 1000)
            acks.append((acked - sent) * 1000)
            after_ack.append((started - acked) * 1000)
    result = {
        "rep": rep,
        "task_type": task_type,
        "count": count,
        "spacing_ms": spacing * 1000,
        "measured": len(latencies),
        "missing": missing,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "min_ms": min(latencies, default=float("nan")),
        "submit_rtt_p50_ms": percentile(acks, 50),
        "submit_rtt_p99_ms": percentile(acks, 99),
        # handler start - submit answer received: the dispatch part (NOTIFY, claim, worker)
        "start_after_ack_p50_ms": percentile(after_ack, 50),
        "start_after_ack_p99_ms": percentile(after_ack, 99),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(
        f"  latency rep {rep}: p50 {result['p50_ms']:.2f} ms, p90 {result['p90_ms']:.2f}, "
        f"p99 {result['p99_ms']:.2f}, max {result['max_ms']:.2f} (submit RTT p50 "
        f"{result['submit_rtt_p50_ms']:.2f} ms; start after ack p50 "
        f"{result['start_after_ack_p50_ms']:.2f} ms), missing {missing} | load {loadavg()}",
        flush=True,
    )
    return result


def _median(
    runs: list[dict[str, Any]], key: str, sub: str | None = None
) -> tuple[float, list[float]]:
    values = [float(r[key][sub] if sub else r[key]) for r in runs]
    return float(statistics.median(values)), values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument(
        "--poll",
        type=float,
        default=0.25,
        help="stats poll interval (s); one GET /api/v1/stats costs ~40 ms of PostgreSQL (20k rows)",
    )
    parser.add_argument("--latency-count", type=int, default=500)
    parser.add_argument("--latency-spacing-ms", type=float, default=20.0)
    parser.add_argument("--latency-task", default="stamp", choices=["stamp", "stamp_sync"])
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument(
        "--count-requests",
        action="store_true",
        help="diagnostic: broker access log on, print requests per endpoint (slows the broker)",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--pg-durations",
        action="store_true",
        help="diagnostic: log every statement's duration in PostgreSQL and summarise it",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="diagnostic: ANALYZE tq_tasks after enqueueing (fresh statistics for the claim plan)",
    )
    parser.add_argument(
        "--sync-commit-off",
        action="store_true",
        help="diagnostic, NOT durable: synchronous_commit=off for the broker's role",
    )
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="run the live working tree instead of a copy taken at start",
    )
    parser.add_argument("--name", default="bench_drain", help="results/<name>.json")
    args = parser.parse_args()

    configs = [Config.parse(c) for c in args.configs.split(",") if c.strip()]
    env = environment()
    env["code"] = snapshot_sources(not args.no_snapshot)
    if not worker_available():
        print("tq-worker or tq_worker.demo is not available; nothing to run", file=sys.stderr)
        return 2
    print(f"bench_drain: {args.tasks} noop tasks, configs {', '.join(map(str, configs))}")
    print(f"  {env['uptime_at_start']}")

    drain: dict[str, Any] = {}
    rows: list[list[str]] = []
    if not args.skip_drain:
        for cfg in configs:
            runs = [drain_once(cfg, rep, args) for rep in range(1, args.reps + 1)]
            rate, rates = _median(runs, "drain_tasks_per_s")
            incl, _ = _median(runs, "drain_incl_startup_tasks_per_s")
            rss_b, _ = _median(runs, "peak_rss_mib", "broker")
            rss_w, _ = _median(runs, "peak_rss_mib", "workers")
            rss_pg, _ = _median(runs, "peak_rss_mib", "postgres")
            drain[str(cfg)] = {
                "median": {
                    "drain_tasks_per_s": rate,
                    "drain_incl_startup_tasks_per_s": incl,
                    "db_window_tasks_per_s": _median(runs, "db_window_tasks_per_s")[0],
                    "peak_rss_broker_mib": rss_b,
                    "peak_rss_workers_mib": rss_w,
                    "peak_rss_postgres_sum_mib": rss_pg,
                    "cpu_broker_pct": _median(runs, "cpu", "broker_cpu_pct")[0],
                    "cpu_workers_pct": _median(runs, "cpu", "workers_cpu_pct")[0],
                    "cpu_postgres_pct": _median(runs, "cpu", "postgres_cpu_pct")[0],
                },
                "runs_drain_tasks_per_s": rates,
                "runs": runs,
            }
            rows.append(
                [
                    f"drain {cfg}",
                    fmt(rate, 0) + " tasks/s",
                    " / ".join(fmt(r, 0) for r in rates),
                    f"incl. startup {fmt(incl, 0)}; RSS broker {rss_b:.0f} MiB, "
                    f"workers {rss_w:.0f} MiB, pg(sum) {rss_pg:.0f} MiB",
                ]
            )

    latency: dict[str, Any] = {}
    if not args.skip_latency:
        runs = [latency_once(rep, args) for rep in range(1, args.reps + 1)]
        p50, p50s = _median(runs, "p50_ms")
        p99, p99s = _median(runs, "p99_ms")
        latency = {
            "median": {
                "p50_ms": p50,
                "p99_ms": p99,
                "submit_rtt_p50_ms": _median(runs, "submit_rtt_p50_ms")[0],
                "start_after_ack_p50_ms": _median(runs, "start_after_ack_p50_ms")[0],
            },
            "runs_p50_ms": p50s,
            "runs_p99_ms": p99s,
            "runs": runs,
        }
        rows.append(
            [
                f"latency p50 ({args.latency_task})",
                f"{p50:.2f} ms",
                " / ".join(f"{v:.2f}" for v in p50s),
                f"target <= {TARGETS['latency_p50_ms']:g} ms",
            ]
        )
        rows.append(
            [
                f"latency p99 ({args.latency_task})",
                f"{p99:.2f} ms",
                " / ".join(f"{v:.2f}" for v in p99s),
                f"target <= {TARGETS['latency_p99_ms']:g} ms",
            ]
        )

    if latency:
        m = latency["median"]
        rows.append(
            [
                "  of which",
                "",
                "",
                f"submit RTT p50 {m['submit_rtt_p50_ms']:.2f} ms; handler start after the "
                f"submit answer p50 {m['start_after_ack_p50_ms']:.2f} ms",
            ]
        )

    best = max(drain.items(), key=lambda kv: kv[1]["median"]["drain_tasks_per_s"], default=None)
    summary = {
        "benchmark": "bench_drain",
        "environment": env,
        "uptime_at_end": uptime(),
        "targets": TARGETS,
        "config": vars(args),
        "best_drain_config": best[0] if best else None,
        "best_drain_tasks_per_s": best[1]["median"]["drain_tasks_per_s"] if best else None,
        "drain": drain,
        "latency": latency,
    }
    path = write_result(args.name, summary)
    print()
    print_table(rows, ["measurement", "median", "runs", "notes"])
    if best:
        verdict = (
            "met"
            if best[1]["median"]["drain_tasks_per_s"] >= TARGETS["drain_tasks_per_s"]
            else "MISSED"
        )
        print(
            f"\n  best drain: {best[0]} {fmt(best[1]['median']['drain_tasks_per_s'], 0)} tasks/s "
            f"-> target >= 5,000/s {verdict}"
        )
    if latency:
        ok50 = latency["median"]["p50_ms"] <= TARGETS["latency_p50_ms"]
        ok99 = latency["median"]["p99_ms"] <= TARGETS["latency_p99_ms"]
        print(f"  latency: p50 {'met' if ok50 else 'MISSED'}, p99 {'met' if ok99 else 'MISSED'}")
    print(f"  {summary['uptime_at_end']}\n  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
