"""taskqueue next to Celery + Redis, RQ and procrastinate: the same workloads in one run.

    .venv/bin/python bench/compare.py            # ~15 min; the first run also installs peers

Set-up (all on this machine, nothing shared with another run):
- the peers live in their own virtualenv, `~/.cache/taskqueue/bench-peers/<pins hash>`,
  installed from PyPI at the versions pinned in PEERS on first use;
- Redis is the system's `redis-server` (Debian: `apt-get install redis-server`; run as root
  and it is installed for you), on a free port, default persistence off (`--save ''`, no AOF:
  Redis as Celery and RQ are usually deployed, not durable at commit);
- procrastinate's PostgreSQL is the project's embedded one (`tq_broker.embedded`, fsync on),
  in a temp dir; taskqueue gets a fresh `tq-broker` (its own embedded PostgreSQL, fsync on,
  auth off) per repetition.

Per repetition and system (systems in a rotating order, so the neighbours' noise spreads):
sequential submits (1 client), concurrent submits (16 clients: 4 processes x 4 threads),
batch submits (1 client, 1000 per call), drain of 5,000 queued no-ops by the system's
workers, idle submit -> handler start latency. The state is emptied between workloads.
Medians of 3 repetitions; ratios are to Celery in the same run. Numbers, not pass/fail.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO,
    Broker,
    environment,
    free_port,
    loadavg,
    print_table,
    snapshot_sources,
    write_result,
)

BENCH = Path(__file__).resolve().parent
SYSTEMS = ("taskqueue", "celery", "rq", "procrastinate")
PEERS = ("celery[redis]==5.7.0", "redis==8.1.0", "rq==3.0.0", "procrastinate==3.10.0",
         "psycopg[binary]==3.3.9", "psycopg-pool==3.3.3")  # fmt: skip
PEERS_ROOT = Path.home() / ".cache" / "taskqueue" / "bench-peers"
CONCURRENT_PROCESSES = 4
CONCURRENT_THREADS = 4
# Worker set-up per system: the same number of processes running handlers, each system at the
# concurrency that drained fastest here (see bench/README.md, "compare.py").
CONFIG = {
    "taskqueue": "2 x tq-worker --concurrency 128 (async handlers)",
    "celery": "celery worker -P prefork -c 2 (2 child processes; prefetch multiplier 4)",
    "rq": "2 x rq worker --worker-class SimpleWorker (no fork per job; see bench/README.md)",
    "procrastinate": "2 x procrastinate worker --concurrency 10 (async handlers)",
}
ROWS = (
    ("sequential", "one client, sequential submits/s", "rate", "{:,.0f}"),
    ("concurrent", "16 concurrent clients, submits/s", "rate", "{:,.0f}"),
    ("batch", "batch (1000 per call), tasks/s", "rate", "{:,.0f}"),
    ("drain", "drain of 5,000 queued tasks, tasks/s", "rate", "{:,.0f}"),
    ("latency", "idle submit -> handler start p50, ms", "p50_ms", "{:.2f}"),
    ("latency", "idle submit -> handler start p99, ms", "p99_ms", "{:.2f}"),
)
LOWER_IS_BETTER = {"p50_ms", "p99_ms"}


# -- set-up ---------------------------------------------------------------------------------


def peers_python(install: bool) -> Path:
    """The peers' virtualenv (created and filled from PyPI on first use)."""
    tag = hashlib.sha256(" ".join(PEERS).encode()).hexdigest()[:12]
    venv = PEERS_ROOT / tag
    py = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return py
    if not install:
        raise SystemExit(f"peers not installed in {venv}; run without --no-install")
    print(f"installing {', '.join(PEERS)} into {venv} ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS], check=True)
    (venv / ".complete").write_text(" ".join(PEERS) + "\n")
    return py


def redis_server_bin() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server missing: apt-get install -y redis-server ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "redis-server"],
            check=True,
            env=env,
        )
        found = shutil.which("redis-server")
    if not found:
        raise SystemExit("no redis-server: install it (Debian: apt-get install redis-server)")
    return found


class Redis:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [redis_server_bin(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(tmp), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.address = f"127.0.0.1:{self.port}"
        from compare_systems import Resp

        deadline = time.monotonic() + 30
        while True:
            try:
                self.resp = Resp(self.address)
                self.resp.call("PING")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def flush(self) -> None:
        self.resp.call("FLUSHALL")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


class ProcrastinateDB:
    """procrastinate's PostgreSQL: the project's embedded server, fsync on."""

    def __init__(self, tmp: Path, peers: Path) -> None:
        from tq_broker.embedded import EmbeddedPostgres

        data = tmp / "pg"
        data.mkdir()
        os.chmod(tmp, 0o755)
        self.pg = EmbeddedPostgres(data, durable=True).start()
        self.conninfo = self.pg.conninfo()
        env = {**os.environ, "CMP_PG": self.conninfo, "PYTHONPATH": str(BENCH)}
        subprocess.run(
            [str(peers.parent / "procrastinate"), "--app", "compare_systems.procrastinate_app",
             "schema", "--apply"],
            check=True, env=env, cwd=BENCH, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def reset(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("TRUNCATE procrastinate_jobs RESTART IDENTITY CASCADE")

    def stop(self) -> None:
        self.pg.stop()


def reset_taskqueue(broker: Broker) -> None:
    import psycopg

    assert broker.tmp is not None
    url = f"{broker.database_url()}&passfile={broker.tmp / 'data' / 'passfile'}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE tq_tasks CASCADE")  # and what references it (attempts)


# -- running one workload -------------------------------------------------------------------


def run_workload(
    system: str, workload: str, args: dict[str, Any], env: dict[str, str], py: Path
) -> dict[str, Any]:
    cmd = [str(py), str(BENCH / "compare_systems.py"), system, workload, json.dumps(args)]
    if workload == "concurrent":
        procs = [
            subprocess.Popen(cmd, env=env, cwd=BENCH, stdout=subprocess.PIPE, text=True)
            for _ in range(CONCURRENT_PROCESSES)
        ]
        parts = [_parse(_output(p, 120 + args["duration"]), system, workload) for p in procs]
        rates = [p["rate"] for p in parts]
        total = None if None in rates else sum(rates)
        return {"rate": total, "parts": parts}
    proc = subprocess.Popen(cmd, env=env, cwd=BENCH, stdout=subprocess.PIPE, text=True)
    return _parse(_output(proc, 900), system, workload)


def _output(proc: subprocess.Popen[str], timeout: float) -> str:
    """The workload's stdout; a workload that hangs is killed and counts as failed."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return ""


def _parse(stdout: str, system: str, workload: str) -> dict[str, Any]:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("CMPJSON ")), None)
    if line is None:
        print(f"  {system} {workload}: failed", flush=True)
        return {"rate": None, "p50_ms": None, "p99_ms": None, "note": "failed"}
    result: dict[str, Any] = json.loads(line[len("CMPJSON ") :])
    return result


def one_rep(
    system: str,
    opts: argparse.Namespace,
    env: dict[str, str],
    py: Path,
    reset: Any,
) -> dict[str, Any]:
    d = opts.duration
    plan: list[tuple[str, dict[str, Any]]] = [
        ("sequential", {"duration": d}),
        ("concurrent", {"duration": d, "threads": CONCURRENT_THREADS}),
        ("batch", {"duration": d, "size": 1000}),
        ("drain", {"tasks": opts.tasks}),
        ("latency", {"count": opts.latency_count, "gap": 0.02}),
    ]
    results: dict[str, Any] = {}
    for workload, args in plan:
        if workload not in opts.workloads:
            continue
        reset()
        t0 = time.monotonic()
        results[workload] = r = run_workload(system, workload, args, env, py)
        r["load"] = loadavg()
        shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                 if k in ("rate", "p50_ms", "p99_ms", "note")}  # fmt: skip
        print(f"  {system:13s} {workload:10s} {shown} ({time.monotonic() - t0:.0f} s, "
              f"load {r['load']})", flush=True)  # fmt: skip
    return results


# -- the table ------------------------------------------------------------------------------


def median_or_none(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if len(got) == len(values) and got else None


def summarise(reps: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for _workload, label, key, _ in ROWS:
        out[label] = {}
        for system, runs in reps.items():
            values = [r.get(_workload, {}).get(key) for r in runs]
            out[label][system] = {"median": median_or_none(values), "runs": values}
    return out


def print_summary(summary: dict[str, dict[str, Any]], systems: list[str]) -> None:
    header = ["path", *systems, *(f"{s} / celery" for s in systems if s != "celery")]
    rows = []
    for _w, label, key, form in ROWS:
        cells = summary[label]
        row = [label]
        for s in systems:
            m = cells[s]["median"]
            row.append("—" if m is None else form.format(m))
        base = cells.get("celery", {}).get("median")
        for s in systems:
            if s == "celery":
                continue
            m = cells[s]["median"]
            if m is None or base is None or m == 0:
                row.append("—")
            elif key in LOWER_IS_BETTER:  # "x times faster" reads the same way for both
                row.append(f"{base / m:.2f}x")
            else:
                row.append(f"{m / base:.2f}x")
        rows.append(row)
    print_table(rows, header)
    print("ratios: > 1 means better than Celery (rates: s / celery; latencies: celery / s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per submit workload")
    ap.add_argument("--tasks", type=int, default=5000, help="tasks queued for the drain")
    ap.add_argument("--latency-count", type=int, default=200)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--workloads", default="sequential,concurrent,batch,drain,latency")
    ap.add_argument("--no-install", action="store_true", help="fail instead of installing peers")
    ap.add_argument("--no-snapshot", action="store_true", help="measure the live tree")
    ap.add_argument("--name", default="compare", help="results/<name>.json")
    opts = ap.parse_args()
    opts.workloads = opts.workloads.split(",")
    systems = opts.systems.split(",")

    # SIGTERM unwinds like Ctrl-C, so Redis, PostgreSQL and the broker are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env_at_start = environment()  # the commit measured: the snapshot below is taken now
    snap = snapshot_sources(not opts.no_snapshot)
    peers = peers_python(install=not opts.no_install) if set(systems) - {"taskqueue"} else None
    tmp = Path(tempfile.mkdtemp(prefix="tq-compare-", dir="/tmp"))
    redis = Redis(tmp)
    pdb = ProcrastinateDB(tmp, peers) if "procrastinate" in systems and peers else None
    base_env = {**os.environ, "CMP_REDIS": redis.address}
    if pdb is not None:
        base_env["CMP_PG"] = pdb.conninfo
    print(f"cpus {os.cpu_count()}, load {loadavg()}; worker set-ups:", flush=True)
    for s in systems:
        print(f"  {s}: {CONFIG[s]}")
    reps: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    try:
        for rep in range(opts.reps):
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            print(f"rep {rep + 1}/{opts.reps} ({', '.join(order)})", flush=True)
            for system in order:
                if system == "taskqueue":
                    # no metrics or gRPC listener: their fixed ports may be taken
                    with Broker(env={"TQ_METRICS_PORT": "0", "TQ_GRPC_PORT": "0"}) as broker:
                        env = {**base_env, "CMP_TQ_URL": broker.url}

                        def reset_tq(b: Broker = broker) -> None:
                            redis.flush()
                            reset_taskqueue(b)

                        reps[system].append(
                            one_rep(system, opts, env, Path(sys.executable), reset_tq)
                        )
                else:
                    assert peers is not None

                    def reset_peer(s: str = system) -> None:
                        redis.flush()
                        if s == "procrastinate" and pdb is not None:
                            pdb.reset()

                    reps[system].append(one_rep(system, opts, base_env, peers, reset_peer))
    finally:
        redis.stop()
        if pdb is not None:
            pdb.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarise(reps)
    print()
    print_summary(summary, systems)
    path = write_result(
        opts.name,
        {
            "environment": {**env_at_start, "snapshot": snap, "load_at_end": loadavg()},
            "peers": list(PEERS),
            "worker_setups": {s: CONFIG[s] for s in systems},
            "options": dict(vars(opts)),
            "summary": summary,
            "runs": reps,
        },
    )
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
