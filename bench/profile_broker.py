"""Where the broker's CPU goes under one workload: the broker runs under cProfile.

    .venv/bin/python bench/profile_broker.py single   # 16 clients, POST /api/v1/tasks
    .venv/bin/python bench/profile_broker.py batch    # 4 clients, POST /api/v1/tasks/batch x1000
    .venv/bin/python bench/profile_broker.py get      # 1 client, GET /api/v1/tasks/{id}
    .venv/bin/python bench/profile_broker.py drain    # 20,000 noop tasks drained by one worker

Prints own time (tottime) grouped by package, and the top functions. cProfile roughly doubles
the per-call cost of Python code, so compare shares, not absolute rates. Writes the raw profile
to bench/results/profile_<workload>.prof (open with `python -m pstats` or snakeviz).
"""

from __future__ import annotations

import argparse
import io
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import (
    BENCH_DIR,
    RESULTS_DIR,
    Broker,
    RawHttpClient,
    http_json,
    loadavg,
    lua_string,
    run_raw_load,
    run_wrk,
    snapshot_sources,
    submit_batch,
    workers,
    wrk_path,
)
from bench_submit import BATCH_BODY, SINGLE_BODY, _lua_get, _lua_post

BUCKETS = [
    ("tq_broker", "tq_broker (our code)"),
    ("tq_client", "tq_client models (our code)"),
    ("pydantic", "pydantic"),
    ("fastapi", "fastapi"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn"),
    ("httptools", "httptools"),
    ("psycopg_pool", "psycopg_pool"),
    ("psycopg", "psycopg"),
    ("asyncio", "asyncio (stdlib)"),
    ("uvloop", "uvloop"),
    ("json", "json (stdlib)"),
    ("uuid", "uuid (stdlib)"),
    ("base64", "base64 (stdlib)"),
    ("typing", "typing (stdlib)"),
    ("contextlib", "contextlib (stdlib)"),
    ("logging", "logging (stdlib)"),
]


def bucket(filename: str, funcname: str) -> str:
    if filename.endswith("asyncio/runners.py") and funcname == "run":
        # uvloop's C loop has no Python frames: its own work AND its idle epoll wait land here
        return "event loop (uvloop C code + idle wait)"
    if filename == "~":
        # builtins: attribute them by name (C functions of extension modules included)
        if "pydantic" in funcname or "validate" in funcname or "serializ" in funcname:
            return "pydantic (C core)"
        if "select" in funcname or "poll" in funcname or "epoll" in funcname:
            return "poll() wait (psycopg sync waits at start-up, idle)"
        return "builtins / C extensions: " + funcname.split(" ")[-1][:40]
    for key, name in BUCKETS:
        if f"/{key}/" in filename or f"/{key}." in filename:
            return name
    return "other: " + Path(filename).name


def report(prof_path: Path, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(prof_path), stream=out)
    totals: dict[str, float] = defaultdict(float)
    grand = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        totals[bucket(filename, func)] += tt
        grand += tt
    lines = ["own time by package (share of profiled CPU):"]
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"  {100 * t / grand:5.1f}%  {t:8.2f}s  {name}")
    stats.sort_stats("tottime").print_stats(top)
    lines.append("")
    lines.append(out.getvalue())
    out2 = io.StringIO()
    stats.stream = out2  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(r"tq_broker|tq_client|fastapi/routing", top)
    lines.append(out2.getvalue())
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=["single", "batch", "get", "drain"])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=64, help="drain: worker concurrency")
    parser.add_argument(
        "--profile-worker",
        action="store_true",
        help="drain: also profile the worker (results/profile_worker_0.prof)",
    )
    args = parser.parse_args()
    snapshot_sources()  # a copy of the code: edits made meanwhile cannot break the run

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    prof = RESULTS_DIR / f"profile_{args.workload}.prof"
    wrapper = [sys.executable, str(BENCH_DIR / "_profiled_broker.py"), str(prof)]
    print(f"profiling broker under {args.workload!r}; load {loadavg()}")
    use_wrk = wrk_path() is not None
    with Broker(wrapper=wrapper) as broker:
        host = f"127.0.0.1:{broker.port}"
        if args.workload in ("single", "batch"):
            body = SINGLE_BODY if args.workload == "single" else BATCH_BODY
            path = "/api/v1/tasks" if args.workload == "single" else "/api/v1/tasks/batch"
            conns = 16 if args.workload == "single" else 4
            raw = RawHttpClient.build("POST", path, host, body)
            if use_wrk:
                r = run_wrk(broker.url + path, _lua_post(body), conns, args.duration)
            else:
                r = run_raw_load(broker.url, lambda _: raw, conns, args.duration)
            print(f"  {r['rps']:.0f} requests/s under the profiler, errors {r['errors']}")
        elif args.workload == "get":
            ids = submit_batch(broker.url, "bench_get", 1000)
            gets = [RawHttpClient.build("GET", f"/api/v1/tasks/{i}", host) for i in ids]
            if use_wrk:
                r = run_wrk(broker.url + "/", _lua_get(ids), 1, args.duration)
            else:
                r = run_raw_load(broker.url, lambda k: gets[k % len(gets)], 1, args.duration)
            print(f"  {r['rps']:.0f} requests/s, p50 {r['p50_ms']:.2f} ms under the profiler")
        else:
            submit_batch(broker.url, "noop", 20_000)
            t0 = time.monotonic()
            with workers(
                broker.url,
                "tq_worker.demo:worker",
                1,
                args.concurrency,
                profile_dir=RESULTS_DIR if args.profile_worker else None,
            ):
                while True:
                    s = http_json(broker.url + "/api/v1/stats")
                    if s["pending_count"] == 0 and s["in_progress_count"] == 0:
                        break
                    time.sleep(0.2)
            print(f"  drained 20,000 in {time.monotonic() - t0:.1f}s under the profiler")
        _ = lua_string  # keep the import for scripts that extend this one
    print(report(prof, args.top))
    print(f"raw profile: {prof}")
    wprof = RESULTS_DIR / "profile_worker_0.prof"
    if args.workload == "drain" and args.profile_worker and wprof.exists():
        print("\n==== worker process ====")
        print(report(wprof, args.top))
        print(f"raw profile: {wprof}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
