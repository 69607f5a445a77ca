"""Where a request's CPU goes in the broker: CPU ms per request for requests that do more and
more work, each run with the same closed-loop load (N keep-alive clients, wrk if present).

  no-db      GET /api/v1/tasks/claim -> 405 (routing, middleware, error handler; no SQL)
  validate   POST /api/v1/tasks with an invalid priority -> 400 (+ body parsing, pydantic)
  get        GET /api/v1/tasks/{id} -> 200 (+ one pooled SELECT, response model)
  submit     POST /api/v1/tasks -> 201 (+ INSERT with a durable commit)
  health     GET /health -> 200 (two count(*) queries)

    .venv/bin/python bench/diag_overhead.py [--connections 16] [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psutil
from _common import (
    Broker,
    CpuMeter,
    RawHttpClient,
    environment,
    loadavg,
    postgres_processes,
    print_table,
    run_raw_load,
    run_wrk,
    snapshot_sources,
    submit_batch,
    write_result,
    wrk_path,
)
from bench_submit import SINGLE_BODY, _lua_get, _lua_post

BAD_BODY = json.dumps({"task_type": "bench_submit", "priority": 999}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    snapshot_sources()  # a copy of the code: edits made meanwhile cannot break the run
    use_wrk = wrk_path() is not None
    rows: list[list[str]] = []
    out: dict[str, Any] = {
        "environment": environment(),
        "load_before": loadavg(),
        "generator": "wrk" if use_wrk else "asyncio",
    }
    with Broker() as broker:
        assert broker.proc is not None
        bp = psutil.Process(broker.proc.pid)
        host = f"127.0.0.1:{broker.port}"
        ids = submit_batch(broker.url, "bench_get", 1000)
        gets = [RawHttpClient.build("GET", f"/api/v1/tasks/{i}", host) for i in ids]
        cases: list[tuple[str, str, str, Any]] = [
            (
                "no-db (405)",
                "/api/v1/tasks/claim",
                'wrk.method = "GET"\n',
                lambda _: RawHttpClient.build("GET", "/api/v1/tasks/claim", host),
            ),
            (
                "validate (400)",
                "/api/v1/tasks",
                _lua_post(BAD_BODY),
                lambda _: RawHttpClient.build("POST", "/api/v1/tasks", host, BAD_BODY),
            ),
            ("get task (200)", "/", _lua_get(ids), lambda k: gets[k % len(gets)]),
            (
                "submit (201)",
                "/api/v1/tasks",
                _lua_post(SINGLE_BODY),
                lambda _: RawHttpClient.build("POST", "/api/v1/tasks", host, SINGLE_BODY),
            ),
            (
                "health (200)",
                "/health",
                'wrk.method = "GET"\n',
                lambda _: RawHttpClient.build("GET", "/health", host),
            ),
        ]
        for name, path, lua, raw in cases:
            cpu = CpuMeter({"broker": lambda: [bp], "postgres": lambda: postgres_processes(bp.pid)})
            if use_wrk:
                run_wrk(broker.url + path, lua, args.connections, 1)  # warm-up
                r = run_wrk(broker.url + path, lua, args.connections, args.duration, cpu=cpu)
            else:
                run_raw_load(broker.url, raw, args.connections, 1, expect=(200, 201, 400, 405))
                r = run_raw_load(
                    broker.url,
                    raw,
                    args.connections,
                    args.duration,
                    cpu=cpu,
                    expect=(200, 201, 400, 405),
                )
            c = r["cpu"]
            ms = c["broker_cpu_pct"] / 100 * c["wall_seconds"] * 1000 / max(1, r["requests"])
            pg = c["postgres_cpu_pct"] / 100 * c["wall_seconds"] * 1000 / max(1, r["requests"])
            out[name] = {**r, "broker_cpu_ms_per_request": ms, "postgres_cpu_ms_per_request": pg}
            rows.append(
                [
                    name,
                    f"{r['rps']:,.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{c['broker_cpu_pct']}%",
                    f"{ms:.3f}",
                    f"{pg:.3f}",
                    f"{c['generator_cpu_pct']}%",
                ]
            )
    out["load_after"] = loadavg()
    print(
        "broker CPU per request, "
        f"{args.connections} clients, load {out['load_before']} -> "
        f"{out['load_after']}"
    )
    print_table(
        rows,
        ["request", "req/s", "p50 ms", "broker CPU", "broker ms/req", "pg ms/req", "generator CPU"],
    )
    print(f"wrote {write_result('diag_overhead', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
