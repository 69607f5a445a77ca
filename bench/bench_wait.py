"""How soon `GET /api/v1/tasks/{id}?wait=` answers once its task completes.

    .venv/bin/python bench/bench_wait.py [--reps 3] [--samples 300] [--idle-waiters 500]

Per sample: submit a task, start `GET ?wait=30` on it, and (0.1 s later, the waiter parked)
claim it and complete it through the worker protocol, driven from here so that the moment of
completion is known. Latency = the wait's answer - the complete's answer (the completion had
committed), also shown from the moment the complete was sent. Part (a) with that one waiter;
part (b) the same while `--idle-waiters` other requests wait on tasks that never finish, so
the ratio b/a shows what a crowd of waiters costs each event (found by task id, not scanned).

Starts its own broker (embedded PostgreSQL, fsync on, auth off) per repetition; prints the
median of the repetitions' p50/p90/p99, and writes bench/results/bench_wait.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    Broker,
    cpu_pressure,
    environment,
    loadavg,
    percentile,
    print_table,
    snapshot_sources,
    write_result,
)

WORKER = "worker-bench-1-aaaaaa"
SETTLE_SECONDS = 0.1  # after starting a wait, before completing its task
FAR_FUTURE = "2099-01-01T00:00:00Z"


async def idle_waiter(client: httpx.AsyncClient, task_id: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            response = await client.get(f"/api/v1/tasks/{task_id}", params={"wait": 60})
            if response.status_code != 200:
                print(f"  idle waiter: {response.status_code}", file=sys.stderr)
                await asyncio.sleep(1)
        except httpx.HTTPError as exc:
            print(f"  idle waiter: {exc!r}", file=sys.stderr)
            await asyncio.sleep(1)  # never a tight loop that starves the rest


async def register(client: httpx.AsyncClient) -> None:
    registered = await client.post(
        "/api/v1/workers", json={"worker_id": WORKER, "task_types": ["bench"], "concurrency": 1}
    )
    assert registered.status_code == 201, registered.text


async def heartbeat(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """The bench is the worker: without heartbeats the reaper would mark it offline."""
    while not stop.is_set():
        try:
            beat = await client.post(f"/api/v1/workers/{WORKER}/heartbeat", json={})
            if beat.status_code != 200:
                print(f"  heartbeat: {beat.status_code} {beat.text}", file=sys.stderr)
        except httpx.HTTPError as exc:
            print(f"  heartbeat: {exc!r}", file=sys.stderr)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2)


async def one_sample(api: httpx.AsyncClient, waiter: httpx.AsyncClient) -> tuple[float, float]:
    created = await api.post("/api/v1/tasks", json={"task_type": "bench"})
    task_id = created.json()["task_id"]
    answer = asyncio.create_task(
        waiter.get(f"/api/v1/tasks/{task_id}", params={"wait": 30}, timeout=40)
    )
    await asyncio.sleep(SETTLE_SECONDS)
    claimed = await api.post("/api/v1/tasks/claim", json={"worker_id": WORKER, "max_tasks": 1})
    if claimed.status_code == 409:  # marked offline (a stall on this shared machine): back
        print(f"  claim: {claimed.text}; registering again", file=sys.stderr)
        await register(api)
        claimed = await api.post("/api/v1/tasks/claim", json={"worker_id": WORKER, "max_tasks": 1})
    assert claimed.status_code == 200, claimed.text
    [task] = claimed.json()["tasks"]
    lease = {"task_id": task["task_id"], "lease_token": task["lease_token"]}
    sent = time.perf_counter()
    done = await api.post("/api/v1/tasks/complete", json={"worker_id": WORKER, "tasks": [lease]})
    acknowledged = time.perf_counter()
    assert done.status_code == 200, done.text
    response = await answer
    answered = time.perf_counter()
    assert response.json()["status"] == "completed", response.text
    return (answered - acknowledged) * 1000, (answered - sent) * 1000


async def measure(url: str, samples: int, idle_waiters: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=idle_waiters + 10, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as api,
        httpx.AsyncClient(base_url=url, timeout=70, limits=limits) as waiter,
    ):
        await register(api)
        stop = asyncio.Event()
        idle = [asyncio.create_task(heartbeat(api, stop))]
        if idle_waiters:
            batch = await api.post(
                "/api/v1/tasks/batch",
                json={
                    "tasks": [
                        {"task_type": "never", "schedule_at": FAR_FUTURE}
                        for _ in range(idle_waiters)
                    ]
                },
            )
            ids = [t["task_id"] for t in batch.json()["tasks"]]
            idle += [asyncio.create_task(idle_waiter(waiter, i, stop)) for i in ids]
            await asyncio.sleep(2)  # let them all park
        for _ in range(10):  # warm-up
            await one_sample(api, waiter)
        after_ack, after_send = [], []
        for _ in range(samples):
            a, s = await one_sample(api, waiter)
            after_ack.append(a)
            after_send.append(s)
        stop.set()
        for task in idle:
            task.cancel()
        await asyncio.gather(*idle, return_exceptions=True)
    return {
        "p50_ms": percentile(after_ack, 50),
        "p90_ms": percentile(after_ack, 90),
        "p99_ms": percentile(after_ack, 99),
        "p50_from_send_ms": percentile(after_send, 50),
        "samples": samples,
    }


def run(samples: int, idle_waiters: int) -> dict[str, Any]:
    with Broker(env={"TQ_METRICS_PORT": "0", "TQ_GRPC_PORT": "0"}) as broker:
        before = (loadavg(), cpu_pressure())
        result = asyncio.run(measure(broker.url, samples, idle_waiters))
        result["load_before"], result["cpu_pressure_before"] = before
        result["load_after"], result["cpu_pressure_after"] = loadavg(), cpu_pressure()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--idle-waiters", type=int, default=500)
    parser.add_argument("--no-snapshot", action="store_true")
    args = parser.parse_args()
    snapshot = snapshot_sources(not args.no_snapshot)
    parts = {"a_one_waiter": 0, "b_with_idle_waiters": args.idle_waiters}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in parts}
    for rep in range(args.reps):
        for name, idle in parts.items():  # alternated: both parts see the same machine
            result = run(args.samples, idle)
            runs[name].append(result)
            print(f"rep {rep + 1} {name}: p50 {result['p50_ms']:.1f} ms", flush=True)
    rows = []
    medians: dict[str, dict[str, float]] = {}
    for name, results in runs.items():
        keys = ("p50_ms", "p90_ms", "p99_ms", "p50_from_send_ms")
        medians[name] = {k: statistics.median(r[k] for r in results) for k in keys}
        rows.append([name, *(f"{medians[name][k]:.1f}" for k in keys), str(len(results))])
    print()
    print_table(rows, ["part", "p50 ms", "p90 ms", "p99 ms", "p50 from send", "reps"])
    ratio = medians["b_with_idle_waiters"]["p50_ms"] / medians["a_one_waiter"]["p50_ms"]
    print(f"\np50 ratio b/a ({args.idle_waiters} idle waiters / none): {ratio:.2f}")
    path = write_result(
        "bench_wait",
        {
            "environment": environment(),
            "snapshot": snapshot,
            "args": vars(args),
            "runs": runs,
            "medians": medians,
            "p50_ratio_b_over_a": ratio,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
