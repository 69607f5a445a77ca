"""Submit-path benchmark of the broker (numbers, not pass/fail).

  (a) single submits: 16 concurrent keep-alive clients POST /api/v1/tasks     -> submits/s
  (b) batch submits:  4 concurrent clients POST /api/v1/tasks/batch (1000 each) -> tasks/s
  (c) GET /api/v1/tasks/{id}: one sequential keep-alive client              -> p50 / p99 ms

Each repetition starts a fresh broker (embedded, durable PostgreSQL in a temp dir), warms it up,
then runs (a), (b), (c). The median of the repetitions is reported, with every run's value.

    .venv/bin/python bench/bench_submit.py [--reps 3] [--duration 10] [--generator auto]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
from typing import Any

from _common import (
    Broker,
    CpuMeter,
    RawHttpClient,
    environment,
    fmt,
    loadavg,
    lua_string,
    postgres_processes,
    print_table,
    run_raw_load,
    run_wrk,
    snapshot_sources,
    submit_batch,
    uptime,
    write_result,
    wrk_path,
)

TARGETS = {"single_submits_per_s": 2000.0, "batch_tasks_per_s": 30000.0, "get_p50_ms": 2.0}
PAYLOAD = base64.b64encode(b"hello taskqueue bench").decode()
SINGLE_BODY = json.dumps({"task_type": "bench_submit", "payload": PAYLOAD}).encode()
BATCH_SIZE = 1000
BATCH_BODY = json.dumps(
    {"tasks": [{"task_type": "bench_batch", "payload": PAYLOAD} for _ in range(BATCH_SIZE)]}
).encode()


def _lua_post(body: bytes) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )


def _lua_get(ids: list[str]) -> str:
    table = ", ".join(f'"{i}"' for i in ids)
    return (
        f"local ids = {{{table}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #ids + 1\n"
        '  return wrk.format("GET", "/api/v1/tasks/" .. ids[i])\n'
        "end\n"
    )


def _load(
    gen: str,
    broker: Broker,
    path: str,
    lua: str,
    raw: Any,
    connections: int,
    duration: float,
    measure_cpu: bool = True,
) -> dict[str, Any]:
    assert broker.proc is not None
    import psutil

    bp = psutil.Process(broker.proc.pid)
    cpu = (
        CpuMeter({"broker": lambda: [bp], "postgres": lambda: postgres_processes(bp.pid)})
        if measure_cpu
        else None
    )
    if gen == "wrk":
        return run_wrk(broker.url + path, lua, connections, duration, cpu=cpu)
    return run_raw_load(broker.url, raw, connections, duration, cpu=cpu)


def _per_request_cpu(r: dict[str, Any]) -> None:
    """CPU milliseconds per request of the broker process and of PostgreSQL."""
    cpu, n = r.get("cpu"), r["requests"]
    if cpu and n:
        for who in ("broker", "postgres"):
            r[f"{who}_cpu_ms_per_request"] = round(
                cpu[f"{who}_cpu_pct"] / 100 * cpu["wall_seconds"] * 1000 / n, 3
            )


def one_repetition(args: argparse.Namespace, gen: str, rep: int) -> dict[str, Any]:
    settings = {"synchronous_commit": "off"} if args.sync_commit_off else {}
    with Broker(role_settings=settings) as broker:
        host = f"127.0.0.1:{broker.port}"
        single_raw = RawHttpClient.build("POST", "/api/v1/tasks", host, SINGLE_BODY)
        batch_raw = RawHttpClient.build("POST", "/api/v1/tasks/batch", host, BATCH_BODY)
        load_before = loadavg()

        # warm-up: fills the connection pool, JITs nothing but warms caches and the WAL
        _load(
            gen, broker, "/api/v1/tasks", _lua_post(SINGLE_BODY), lambda _: single_raw, 16, 2, False
        )
        single = _load(
            gen,
            broker,
            "/api/v1/tasks",
            _lua_post(SINGLE_BODY),
            lambda _: single_raw,
            16,
            args.duration,
        )
        single["submits_per_s"] = single["ok"] / single["seconds"]
        _per_request_cpu(single)

        _load(
            gen,
            broker,
            "/api/v1/tasks/batch",
            _lua_post(BATCH_BODY),
            lambda _: batch_raw,
            4,
            1,
            False,
        )
        batch = _load(
            gen,
            broker,
            "/api/v1/tasks/batch",
            _lua_post(BATCH_BODY),
            lambda _: batch_raw,
            4,
            args.duration,
        )
        batch["tasks_per_s"] = batch["ok"] * BATCH_SIZE / batch["seconds"]
        _per_request_cpu(batch)

        ids = submit_batch(broker.url, "bench_get", 1000, b"x" * 32)
        n = len(ids)
        get_raw = [RawHttpClient.build("GET", f"/api/v1/tasks/{i}", host) for i in ids]
        _load(gen, broker, "/", _lua_get(ids), lambda k: get_raw[k % n], 1, 1, False)
        get = _load(gen, broker, "/", _lua_get(ids), lambda k: get_raw[k % n], 1, args.get_duration)
        _per_request_cpu(get)

        result = {
            "rep": rep,
            "broker_startup_s": round(broker.startup_seconds, 2),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "single": single,
            "batch": batch,
            "get": get,
        }
    print(
        f"  rep {rep}: single {fmt(single['submits_per_s'])}/s "
        f"(p50 {single['p50_ms']:.2f} ms, err {single['errors']}, "
        f"broker {single.get('broker_cpu_ms_per_request')} ms CPU/req, "
        f"cpu broker {single['cpu']['broker_cpu_pct']}% pg {single['cpu']['postgres_cpu_pct']}% "
        f"gen {single['cpu']['generator_cpu_pct']}%) | "
        f"batch {fmt(batch['tasks_per_s'])} tasks/s (err {batch['errors']}, "
        f"cpu broker {batch['cpu']['broker_cpu_pct']}% pg {batch['cpu']['postgres_cpu_pct']}%) | "
        f"GET p50 {get['p50_ms']:.3f} p99 {get['p99_ms']:.3f} ms | load {loadavg()}",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per (a) and (b)")
    parser.add_argument("--get-duration", type=float, default=5.0, help="seconds for (c)")
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
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
    parser.add_argument("--name", default="bench_submit", help="results/<name>.json")
    args = parser.parse_args()

    gen = args.generator
    if gen == "auto":
        gen = "wrk" if wrk_path() else "asyncio"
    elif gen == "wrk" and not wrk_path():
        print("wrk not found (apt-get install wrk); use --generator asyncio", file=sys.stderr)
        return 2
    env = environment()
    env["code"] = snapshot_sources(not args.no_snapshot)
    detail = wrk_path() if gen == "wrk" else "asyncio raw HTTP/1.1 keep-alive client on uvloop"
    print(f"bench_submit: generator={gen} ({detail})")
    print(f"  {env['uptime_at_start']}")

    runs = [one_repetition(args, gen, rep) for rep in range(1, args.reps + 1)]

    def med(path: tuple[str, str]) -> tuple[float, list[float]]:
        values = [float(r[path[0]][path[1]]) for r in runs]
        return float(statistics.median(values)), values

    metrics = {
        "single_submits_per_s": med(("single", "submits_per_s")),
        "single_p50_ms": med(("single", "p50_ms")),
        "single_p99_ms": med(("single", "p99_ms")),
        "batch_tasks_per_s": med(("batch", "tasks_per_s")),
        "batch_request_p50_ms": med(("batch", "p50_ms")),
        "get_p50_ms": med(("get", "p50_ms")),
        "get_p99_ms": med(("get", "p99_ms")),
        "get_rps": med(("get", "rps")),
        "single_broker_cpu_ms_per_request": med(("single", "broker_cpu_ms_per_request")),
        "single_postgres_cpu_ms_per_request": med(("single", "postgres_cpu_ms_per_request")),
        "batch_broker_cpu_ms_per_request": med(("batch", "broker_cpu_ms_per_request")),
        "get_broker_cpu_ms_per_request": med(("get", "broker_cpu_ms_per_request")),
    }
    summary = {
        "benchmark": "bench_submit",
        "generator": gen,
        "environment": env,
        "uptime_at_end": uptime(),
        "config": {
            "sync_commit_off_diagnostic": args.sync_commit_off,
            "single_connections": 16,
            "batch_connections": 4,
            "batch_size": BATCH_SIZE,
            "get_connections": 1,
            "duration_s": args.duration,
            "get_duration_s": args.get_duration,
            "reps": args.reps,
        },
        "targets": TARGETS,
        "median": {k: v[0] for k, v in metrics.items()},
        "runs_values": {k: v[1] for k, v in metrics.items()},
        "runs": runs,
    }
    path = write_result(args.name, summary)

    def status(key: str, value: float) -> str:
        target = TARGETS.get(key)
        if target is None:
            return ""
        lower_is_better = key.endswith("_ms")
        met = value < target if lower_is_better else value >= target
        op = "<" if lower_is_better else ">="
        return ("met" if met else "MISSED") + f" (target {op} {target:g})"

    rows = []
    for key, (m, values) in metrics.items():
        digits = 3 if key.endswith(("_ms", "_request")) else 0
        rows.append(
            [key, fmt(m, digits), " / ".join(fmt(v, digits) for v in values), status(key, m)]
        )
    print()
    print_table(rows, ["metric", "median", "runs", "target"])
    print(f"\n  {summary['uptime_at_end']}\n  wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
