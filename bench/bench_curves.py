"""Scaling curves: drain rate and claim latency against backlog, worker processes, task types
and broker replicas; single-submit rate against payload size; peak RSS of every process group.

Each point of a drain curve starts a fresh broker (embedded, durable PostgreSQL; auth off; no
metrics or gRPC port, so it cannot collide with other brokers on the machine), then:

  1. loads the backlog through POST /api/v1/tasks/batch (1000 tasks a request, --load-clients
     requests in flight), task types t0000, t0001, ... assigned round-robin;
  2. claim latency AT REST: a probe (a registered worker of type t0000, its own HTTP client)
     times --rest-probes sequential `POST /api/v1/tasks/claim` (max_tasks --probe-max-tasks,
     wait 0), completing each claim before the next: the claim's cost at that backlog;
  3. starts the worker processes (`tq-worker --app curves_app:worker --concurrency C`, each
     taking type t0000 only), spread round-robin over the replicas, and keeps the probe
     claiming --probe-rate times a second: claim latency UNDER LOAD;
  4. stops when --drain-tasks tasks (or all of type t0000, if fewer) are finished. Drain rate =
     that number / (its last finished_at - the first claimed_at), from the database's clocks;
  5. samples the peak RSS of the broker process(es), the worker processes and PostgreSQL (sum
     over its processes; shared buffers counted in each) every 50 ms, and their CPU.

The payload curve runs one broker: --payload-clients keep-alive clients submit single tasks
with a payload of each size for --payload-seconds.

Curves (pick with --curves): backlog, workers, types, replicas, payload. Every size is a
parameter; defaults fit a shared 2-core machine (see bench/README.md for what they took).

    .venv/bin/python bench/bench_curves.py [--curves backlog,workers] [--backlogs 10000,100000]
    .venv/bin/python bench/curves_plot.py bench/results/curves.json   # redraw the PNGs

Writes results/<name>.json and results/<name>.md (summaries, committed), results/<name>-*.png
(plots, committed) and results/raw/<name>/ (every latency sample; regenerated, not committed).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _claim_probe import Probe, latency_summary
from _common import (
    RESULTS_DIR,
    CpuMeter,
    RawHttpClient,
    RssSampler,
    environment,
    http_json,
    loadavg,
    postgres_processes,
    run_raw_load,
    snapshot_sources,
    uptime,
    worker_available,
    workers,
)
from _replicas import broker_processes, cluster

DRAIN_TYPE = "t0000"


def type_name(i: int) -> str:
    return f"t{i:04d}"


# -- load -------------------------------------------------------------------------------------


def bulk_load(url: str, types: int, n: int, clients: int, payload: bytes = b"") -> float:
    """Enqueue n tasks over `types` task types (round-robin) through the batch route, `clients`
    requests in flight. Returns tasks/s."""
    p64 = base64.b64encode(payload).decode()

    def one(start: int) -> int:
        k = min(1000, n - start)
        body = {
            "tasks": [
                {"task_type": type_name((start + j) % types), "payload": p64} for j in range(k)
            ]
        }
        return len(http_json(url + "/api/v1/tasks/batch", body, timeout=300)["tasks"])

    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(one, range(0, n, 1000)))
    if done != n:
        raise RuntimeError(f"loaded {done} of {n} tasks")
    return n / (time.monotonic() - t0)


# -- one drain point --------------------------------------------------------------------------


def claim_sql_at_rest(
    database_url: str, worker_id: str, max_tasks: int, count: int
) -> dict[str, Any]:
    """The broker's own claim statement (queries.sql `task_claim`) for the probe's worker, under
    EXPLAIN (ANALYZE, BUFFERS) in a transaction rolled back (nothing is claimed): PostgreSQL's
    share of a claim, and the pages it touched — a count the machine's load cannot blur."""
    import psycopg

    from tq_broker.queries import queries
    from tq_client.models import ATTEMPTS_KEPT

    statement = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + queries()["task_claim"]
    params = {
        "worker_id": worker_id,
        "any_key": True,
        "key_id": None,
        "max_tasks": max_tasks,
        "lease_ttl_seconds": 30,
        "attempts_kept": ATTEMPTS_KEPT,
    }
    times: list[float] = []
    plan: dict[str, Any] = {}
    with psycopg.connect(database_url) as conn:
        for _ in range(count):
            row = conn.execute(statement, params).fetchone()
            conn.rollback()
            assert row is not None
            plan = row[0][0]
            times.append(float(plan["Execution Time"]))
        # What the planner knew: the plan follows the statistics, not the table's size.
        stats = conn.execute(
            "SELECT n_mod_since_analyze, (last_analyze IS NOT NULL OR last_autoanalyze IS NOT"
            " NULL), autoanalyze_count FROM pg_stat_user_tables WHERE relname = 'tq_tasks'"
        ).fetchone()
    top = plan.get("Plan", {})
    buffers = int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))
    return {
        **latency_summary(times),
        "shared_buffers": buffers,
        "scans": _scans(top),
        "rows_modified_since_analyze": stats[0] if stats else None,
        "ever_analyzed": stats[1] if stats else None,
        "autoanalyze_count": stats[2] if stats else None,
    }


def _scans(node: dict[str, Any]) -> list[str]:
    """The scan and sort nodes of a JSON plan, with their actual rows."""
    out = []
    if node.get("Node Type") in ("Index Scan", "Bitmap Heap Scan", "Seq Scan", "Sort"):
        out.append(f"{node['Node Type']} ({node.get('Actual Rows', '?')} rows)")
    for child in node.get("Plans", []):
        out += _scans(child)
    return out


def drain_point(
    curve: str,
    x: int,
    args: argparse.Namespace,
    *,
    backlog: int,
    types: int = 1,
    processes: int | None = None,
    replicas: int = 1,
) -> dict[str, Any]:
    import psutil
    import psycopg

    processes = processes or args.workers
    of_type = len(range(0, backlog, types))  # tasks of DRAIN_TYPE in the backlog
    print(
        f"  {curve}={x}: backlog {backlog:,} over {types} type(s), {processes} worker "
        f"process(es) x {args.concurrency}, {replicas} replica(s) | load {loadavg()}",
        flush=True,
    )
    with cluster(replicas) as (broker, urls):
        load_rate = bulk_load(urls[0], types, backlog, args.load_clients)
        load_before = loadavg()
        probe = Probe(urls[0], DRAIN_TYPE, args.probe_max_tasks, args.probe_rate)
        rest = probe.at_rest(args.rest_probes)
        claim_sql = claim_sql_at_rest(
            broker.database_url(), probe.worker_id, args.probe_max_tasks, args.rest_probes
        )
        with psycopg.connect(broker.database_url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tq_tasks WHERE finished_at IS NOT NULL"
            ).fetchone()
        before = int(row[0]) if row else 0  # the rest probe's tasks: not part of the drain
        target = max(1, min(args.drain_tasks, of_type - before))
        brokers = broker_processes(broker)
        worker_procs: list[Any] = []
        groups = {
            "broker": lambda: brokers,
            "workers": lambda: worker_procs,
            "postgres": lambda: postgres_processes(brokers[0].pid),
        }
        rss, cpu = RssSampler(groups), CpuMeter(groups)
        rss.start()
        env = {"TQ_BENCH_TYPES": DRAIN_TYPE}
        with (
            contextlib.ExitStack() as stack,
            psycopg.connect(broker.database_url(), autocommit=True) as conn,
        ):
            for i, url in enumerate(urls):
                count = len(range(i, processes, len(urls)))
                if count:
                    procs = stack.enter_context(
                        workers(
                            url,
                            "curves_app:worker",
                            count,
                            args.concurrency,
                            None,
                            broker.tmp,
                            env=env,
                        )
                    )
                    worker_procs.extend(psutil.Process(p.pid) for p in procs)
            cpu.start()
            probe.start()
            deadline = time.monotonic() + args.drain_timeout
            finished = 0
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT count(*) FROM tq_tasks WHERE finished_at IS NOT NULL"
                ).fetchone()
                finished = int(row[0]) if row else 0
                if finished >= before + target:
                    break
                time.sleep(0.25)
            cpu_use = cpu.stop()
            probe.stop()
        rss.stop()
        with psycopg.connect(broker.database_url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tq_tasks WHERE finished_at IS NOT NULL"
            ).fetchone()
            timed_out = finished < before + target
            drained = max(0, min(target, (int(row[0]) if row else 0) - before))
            first, kth = conn.execute(
                "WITH f AS (SELECT claimed_at, finished_at FROM tq_tasks "
                "           WHERE finished_at IS NOT NULL ORDER BY finished_at OFFSET %s)"
                " SELECT extract(epoch FROM min(claimed_at))::float8,"
                "        extract(epoch FROM (SELECT finished_at FROM f ORDER BY finished_at"
                "                            OFFSET %s LIMIT 1))::float8 FROM f",
                (before, max(0, drained - 1)),
            ).fetchone() or (None, None)
    seconds = (kth - first) if (kth is not None and first is not None) else float("nan")
    point = {
        "curve": curve,
        "x": x,
        "backlog": backlog,
        "task_types": types,
        "worker_processes": processes,
        "concurrency": args.concurrency,
        "replicas": replicas,
        "load_tasks_per_s": round(load_rate, 1),
        "drained": drained,
        "timed_out": timed_out,
        "drain_seconds": round(seconds, 3),
        "drain_tasks_per_s": round(drained / seconds, 1) if seconds and seconds > 0 else None,
        "claim_at_rest": latency_summary(rest),
        "claim_under_load": latency_summary(probe.claim_ms),
        "claim_sql_at_rest": claim_sql,
        "probe_misses": probe.misses,
        "probe_errors": probe.errors[:5],
        "cpu": cpu_use,
        "peak_rss_mib": {k: round(v, 1) for k, v in rss.peak_mib.items()},
        "peak_rss_largest_process_mib": {k: round(v, 1) for k, v in rss.peak_each_mib.items()},
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    raw_dir = args.results_dir / "raw" / args.name
    raw_dir.mkdir(parents=True, exist_ok=True)
    (raw_dir / f"{curve}-{x}.json").write_text(
        json.dumps({"claim_at_rest_ms": rest, "claim_under_load_ms": probe.claim_ms}) + "\n"
    )
    print(
        f"    drain {point['drain_tasks_per_s']} tasks/s ({drained:,} in {seconds:.1f} s"
        f"{', TIMED OUT' if timed_out else ''}); claim p50/p99 at rest "
        f"{point['claim_at_rest']['p50_ms']}/{point['claim_at_rest']['p99_ms']} ms, under load "
        f"{point['claim_under_load']['p50_ms']}/{point['claim_under_load']['p99_ms']} ms; SQL "
        f"{claim_sql['p50_ms']}/{claim_sql['p99_ms']} ms, {claim_sql['shared_buffers']} buffers; "
        f"RSS broker {point['peak_rss_mib']['broker']} workers {point['peak_rss_mib']['workers']}"
        f" pg {point['peak_rss_mib']['postgres']} MiB; cpu {cpu_use} | load {loadavg()}",
        flush=True,
    )
    return point


# -- the payload curve ------------------------------------------------------------------------


def payload_curve(args: argparse.Namespace) -> list[dict[str, Any]]:
    import psutil

    points = []
    with cluster(1) as (broker, urls):
        assert broker.proc is not None
        bp = psutil.Process(broker.proc.pid)
        host = urls[0].removeprefix("http://")
        for size in args.payload_sizes:
            payload = base64.b64encode(os.urandom(size)).decode()
            body = json.dumps({"task_type": DRAIN_TYPE, "payload": payload}).encode()
            raw = RawHttpClient.build("POST", "/api/v1/tasks", host, body)
            groups = {"broker": lambda: [bp], "postgres": lambda: postgres_processes(bp.pid)}
            rss = RssSampler(groups)
            rss.start()
            load_before = loadavg()
            out = run_raw_load(
                urls[0],
                lambda _i, raw=raw: raw,
                args.payload_clients,
                args.payload_seconds,
                cpu=CpuMeter(dict(groups)),
                expect=(201,),
            )
            rss.stop()
            rps = out["ok"] / out["seconds"]
            point = {
                "curve": "payload",
                "x": size,
                "payload_bytes": size,
                "body_bytes": len(body),
                "clients": args.payload_clients,
                "submits_per_s": round(rps, 1),
                "payload_mib_per_s": round(rps * size / 2**20, 2),
                "errors": out["errors"],
                "p50_ms": round(out["p50_ms"], 3),
                "p99_ms": round(out["p99_ms"], 3),
                "cpu": out.get("cpu"),
                "peak_rss_mib": {k: round(v, 1) for k, v in rss.peak_mib.items()},
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
            }
            points.append(point)
            print(
                f"  payload={size:,} B: {rps:,.0f} submits/s ({point['payload_mib_per_s']} MiB/s),"
                f" p50 {point['p50_ms']} ms p99 {point['p99_ms']} ms, errors {out['errors']}, "
                f"RSS broker {point['peak_rss_mib']['broker']} MiB | load {loadavg()}",
                flush=True,
            )
    return points


# -- summary ----------------------------------------------------------------------------------


def markdown(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    lines = [
        f"# Scaling curves ({summary['name']})",
        "",
        f"Commit {env['git']['commit']}, {env['cpus']} CPUs, started {env['started_at']}.",
        f"Load at start: `{env['uptime_at_start']}`; at end: `{summary['uptime_at_end']}`.",
        f"Command: `{summary['command']}`",
        "",
    ]
    drain_rows = [p for p in summary["points"] if p["curve"] != "payload"]
    if drain_rows:
        lines += [
            "| curve | x | backlog | types | worker procs | replicas | drain tasks/s |"
            " claim p50 / p99 at rest (ms) | claim p50 / p99 under load (ms) |"
            " claim SQL p50 (ms), buffers |"
            " peak RSS broker / workers / pg (MiB) | CPU % broker / workers / pg | load before |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for p in drain_rows:
            rest, busy, rss, cpu = (
                p["claim_at_rest"],
                p["claim_under_load"],
                p["peak_rss_mib"],
                p["cpu"],
            )
            rate = "—" if p["drain_tasks_per_s"] is None else f"{p['drain_tasks_per_s']:,.0f}"
            if p["timed_out"]:
                rate += " (timed out)"
            lines.append(
                f"| {p['curve']} | {p['x']:,} | {p['backlog']:,} | {p['task_types']} |"
                f" {p['worker_processes']} | {p['replicas']} | {rate} ({p['drained']:,} tasks) |"
                f" {rest['p50_ms']:.1f} / {rest['p99_ms']:.1f} |"
                f" {busy['p50_ms']:.1f} / {busy['p99_ms']:.1f} |"
                f" {_sql_cell(p)} |"
                f" {rss['broker']:.0f} / {rss['workers']:.0f} / {rss['postgres']:.0f} |"
                f" {cpu['broker_cpu_pct']:.0f} / {cpu['workers_cpu_pct']:.0f} /"
                f" {cpu['postgres_cpu_pct']:.0f} | {p['loadavg_before']} |"
            )
        lines.append("")
    pay = [p for p in summary["points"] if p["curve"] == "payload"]
    if pay:
        lines += [
            "| payload (B) | submits/s | payload MiB/s | p50 / p99 (ms) | errors |"
            " CPU % broker / pg | peak RSS broker (MiB) | load before |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in pay:
            cpu = p["cpu"] or {}
            lines.append(
                f"| {p['payload_bytes']:,} | {p['submits_per_s']:,.0f} | {p['payload_mib_per_s']}"
                f" | {p['p50_ms']:.1f} / {p['p99_ms']:.1f} | {p['errors']} |"
                f" {cpu.get('broker_cpu_pct', 0):.0f} / {cpu.get('postgres_cpu_pct', 0):.0f} |"
                f" {p['peak_rss_mib']['broker']:.0f} | {p['loadavg_before']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _sql_cell(point: dict[str, Any]) -> str:
    sql = point.get("claim_sql_at_rest")
    return "—" if sql is None else f"{sql['p50_ms']:.2f}, {sql['shared_buffers']:,}"


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", default="backlog,workers,types,replicas,payload")
    parser.add_argument("--backlogs", type=_ints, default=_ints("10000,100000,1000000"))
    parser.add_argument("--worker-counts", type=_ints, default=_ints("1,2,4,8,16"))
    parser.add_argument("--type-counts", type=_ints, default=_ints("1,10,100,1000"))
    parser.add_argument("--replica-counts", type=_ints, default=_ints("1,2,3"))
    parser.add_argument(
        "--payload-sizes", type=_ints, default=_ints("0,1024,16384,65536,262144,1048576")
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (most curves)")
    parser.add_argument("--concurrency", type=int, default=64, help="per worker process")
    parser.add_argument("--drain-tasks", type=int, default=20_000, help="tasks timed per point")
    parser.add_argument(
        "--base-backlog", type=int, default=20_000, help="backlog of the workers/replicas curves"
    )
    parser.add_argument("--type-backlog", type=int, default=100_000, help="backlog, types curve")
    parser.add_argument("--load-clients", type=int, default=4, help="batch requests in flight")
    parser.add_argument("--rest-probes", type=int, default=50)
    parser.add_argument("--probe-rate", type=float, default=10.0, help="claims/s under load")
    parser.add_argument("--probe-max-tasks", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--payload-clients", type=int, default=16)
    parser.add_argument("--payload-seconds", type=float, default=5.0)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNGs")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--no-snapshot", action="store_true", help="run the live tree, not a copy taken at start"
    )
    parser.add_argument("--name", default="curves", help="results/<name>.json|md|-*.png")
    args = parser.parse_args()
    curves = [c.strip() for c in args.curves.split(",") if c.strip()]
    unknown = set(curves) - {"backlog", "workers", "types", "replicas", "payload"}
    if unknown:
        parser.error(f"unknown curve(s): {', '.join(sorted(unknown))}")

    env = environment()
    env["code"] = snapshot_sources(not args.no_snapshot)
    if not worker_available():
        print("tq-worker is not available; nothing to run", file=sys.stderr)
        return 2
    print(f"bench_curves: {', '.join(curves)}\n  {env['uptime_at_start']}", flush=True)
    points: list[dict[str, Any]] = []
    for curve in curves:
        if curve == "backlog":
            points += [drain_point(curve, n, args, backlog=n) for n in args.backlogs]
        elif curve == "workers":
            points += [
                drain_point(curve, w, args, backlog=args.base_backlog, processes=w)
                for w in args.worker_counts
            ]
        elif curve == "types":
            points += [
                drain_point(curve, t, args, backlog=args.type_backlog, types=t)
                for t in args.type_counts
            ]
        elif curve == "replicas":
            points += [
                drain_point(curve, r, args, backlog=args.base_backlog, replicas=r)
                for r in args.replica_counts
            ]
        else:
            points += payload_curve(args)
    summary = {
        "benchmark": "bench_curves",
        "name": args.name,
        "command": "bench/bench_curves.py " + " ".join(sys.argv[1:]),
        "environment": env,
        "uptime_at_end": uptime(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "points": points,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{args.name}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (args.results_dir / f"{args.name}.md").write_text(markdown(summary) + "\n")
    print(f"\n{markdown(summary)}\n  wrote {path}")
    if not args.no_plot:
        from curves_plot import plot

        for png in plot(path):
            print(f"  wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
