"""Soak: a steady load for a long time, with completions and retention running; then,
optionally, a transaction held open elsewhere. Numbers over time, not pass/fail.

What runs (all on this machine):
  - its own durable embedded PostgreSQL (tq_broker.embedded.EmbeddedPostgres) and one broker
    process on it (`tq-broker --database-url ...`), auth ON with a bootstrap admin key and a high
    rate limit, so the shared rate-limit bucket (tq_rate_buckets) is written as in production;
    short retention (--retention-seconds, default 60) and a cleaner every 5 s, so finished tasks
    are deleted during the run;
  - 2 worker processes (`tq-worker --app latency_app:worker`): the `stamp` handler returns the
    time it started (~no work);
  - a submitter: single `POST /api/v1/tasks` at a steady open-loop rate (--rate, default 150/s);
  - a claim probe: a registered worker of its own task type (`soak_probe`) that, --probe-rate
    times a second, submits one probe task, times `POST /api/v1/tasks/claim` (wait 0) for it,
    and completes it. That claim runs the same task_claim statement over the same table and
    index as the workers' claims, but never long-polls, so its duration is the claim's cost
    through the broker (HTTP, auth, the event loop, the statement);
  - a SQL probe: the same task_claim statement (queries.sql) timed from a plain connection,
    for a task type of its own: PostgreSQL's share of the claim without the broker;
  - a sampler: every --sample-seconds the broker / worker / PostgreSQL RSS and CPU, the probe's
    claim p50/p99, submit -> handler-start p50/p99 of the `stamp` tasks finished in the interval
    (handler start time from the result, minus created_at: same clock), n_live_tup / n_dead_tup /
    sizes / autovacuum counts of the hot tables, and /proc/loadavg; every second the number of
    the broker's own sessions (application_name 'tq-%') that are idle in a transaction, and the
    age of the oldest transaction / xmin on the server.

Phases: --minutes of steady load, then (--hold-minutes > 0) a separate session runs
`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current();` and stays idle in that
transaction for --hold-minutes, then commits; then --recovery-minutes more of steady load.

    .venv/bin/python bench/bench_soak.py --minutes 30 --hold-minutes 10 --recovery-minutes 3

Writes bench/results/<name>.json (every sample; not in git), <name>.summary.json (the rest;
kept) and <name>.png (bench/soak_plot.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    BrokerProcess,
    RawHttpClient,
    cpu_pressure,
    environment,
    free_port,
    percentile,
    run_async,
    snapshot_sources,
    uptime,
    workers,
    write_result,
)

API_KEY = "soak-admin-key-" + uuid.uuid4().hex
HOT_TABLES = ("tq_tasks", "tq_workers", "tq_rate_buckets", "tq_event_listeners")
PROBE_TYPE = "soak_probe"


# -- the system under test ------------------------------------------------------------------


@dataclass
class System:
    """Embedded PostgreSQL + one broker process + worker processes, in a temp dir."""

    args: argparse.Namespace
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tq-soak-", dir="/tmp")))
    port: int = field(default_factory=free_port)
    pg: Any = None
    broker: BrokerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_postgres(self) -> None:
        from tq_broker.embedded import EmbeddedPostgres

        os.chmod(self.tmp, 0o755)  # as root, PostgreSQL runs as another user and must reach it
        self.pg = EmbeddedPostgres(self.tmp / "data", durable=True).start()
        # Logging only: one line per autovacuum run, with "dead but not yet removable".
        self.sql(
            "ALTER SYSTEM SET log_autovacuum_min_duration = 0",
            *[f"ALTER SYSTEM SET {k} = '{v}'" for k, v in self.args.pg_setting],
            "SELECT pg_reload_conf()",
        )

    def database_url(self) -> str:
        return str(self.pg.url())

    def sql(self, *statements: str) -> list[Any]:
        import psycopg

        out: list[Any] = []
        with psycopg.connect(self.pg.conninfo(), autocommit=True) as conn:
            for q in statements:
                cur = conn.execute(q.encode())
                out.append(cur.fetchall() if cur.description else None)
        return out

    def start_broker(self) -> None:
        env = {
            "TQ_AUTH": "on",
            "TQ_ADMIN_API_KEY": API_KEY,
            "TQ_RATE_LIMIT_PER_SECOND": "100000",
            "TQ_RATE_LIMIT_BURST": "200000",
            "TQ_RETENTION_SECONDS": str(self.args.retention_seconds),
            "TQ_CLEANUP_INTERVAL_SECONDS": str(self.args.cleanup_interval_seconds),
        }
        self.broker = BrokerProcess(
            ["--database-url", self.database_url(), "--log-level", "warning"],
            self.tmp / "broker.log",
            env=env,
            port=self.port,
        )
        self.broker.start(wait=False).wait_healthy(120)

    def log_tail(self) -> str:
        return (self.tmp / "broker.log").read_bytes()[-3000:].decode(errors="replace")

    def postgres_processes(self) -> list[Any]:
        import psutil

        try:
            root = psutil.Process(self.pg.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.pg is not None:
            self.pg.stop()

    def cleanup(self) -> None:
        if not self.args.keep_dir:
            shutil.rmtree(self.tmp, ignore_errors=True)


# -- load: submitter and claim probe (one asyncio loop on a thread) ------------------------------


class Load(threading.Thread):
    """Steady open-loop submits and the claim probe; results are drained by the sampler."""

    def __init__(self, port: int, rate: float, probe_rate: float, connections: int = 16) -> None:
        super().__init__(daemon=True)
        self.port, self.rate, self.probe_rate, self.connections = (
            port,
            rate,
            probe_rate,
            connections,
        )
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.claim_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.submitted = 0
        self.errors = 0
        self.behind = 0  # submits that could not be sent on time (all connections busy)
        self.probe_misses = 0  # probe claims that returned no task
        self.error_samples: list[str] = []

    def drain(self) -> dict[str, Any]:
        with self._lock:
            out = {
                "claim_ms": self.claim_ms,
                "submit_ms": self.submit_ms,
                "submitted": self.submitted,
                "errors": self.errors,
                "behind": self.behind,
                "probe_misses": self.probe_misses,
            }
            self.claim_ms, self.submit_ms = [], []
            self.submitted = self.errors = self.behind = self.probe_misses = 0
        return out

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        run_async(self._main())

    def _error(self, what: str) -> None:
        with self._lock:
            self.errors += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(what[:300])

    async def _main(self) -> None:
        await asyncio.gather(self._submitter(), self._probe())

    def _req(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        raw = RawHttpClient.build(method, path, f"127.0.0.1:{self.port}", data)
        head, _, rest = raw.partition(b"\r\n")
        return head + b"\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n" + rest

    async def _submitter(self) -> None:
        raw = self._req("POST", "/api/v1/tasks", {"task_type": "stamp"})
        queue: asyncio.Queue[float] = asyncio.Queue()

        async def sender() -> None:
            client = RawHttpClient("127.0.0.1", self.port)
            while not self._halt.is_set():
                try:
                    await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    continue
                try:
                    status, answer = await client.request(raw)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    self._error(f"submit: {exc!r}")
                    await client.close()
                    client = RawHttpClient("127.0.0.1", self.port)
                    continue
                with self._lock:
                    if status == 201:
                        self.submitted += 1
                    else:
                        self.errors += 1
                        if len(self.error_samples) < 20:
                            self.error_samples.append(f"submit {status}: {answer[:200]!r}")
            await client.close()

        senders = [asyncio.create_task(sender()) for _ in range(self.connections)]
        interval = 1.0 / self.rate
        next_at = time.perf_counter()
        while not self._halt.is_set():
            next_at += interval
            if queue.qsize() >= self.connections:
                with self._lock:
                    self.behind += 1
            else:
                queue.put_nowait(next_at)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*senders)

    async def _probe(self) -> None:
        worker_id = f"soak-probe-{os.getpid()}"
        client = RawHttpClient("127.0.0.1", self.port)
        register = {"worker_id": worker_id, "task_types": [PROBE_TYPE], "concurrency": 1}
        status, answer = await client.request(self._req("POST", "/api/v1/workers", register))
        if status != 201:
            self._error(f"probe register {status}: {answer[:200]!r}")
            return
        submit = self._req("POST", "/api/v1/tasks", {"task_type": PROBE_TYPE})
        claim = self._req(
            "POST",
            "/api/v1/tasks/claim",
            {"worker_id": worker_id, "max_tasks": 1, "wait_seconds": 0},
        )
        beat = self._req("POST", f"/api/v1/workers/{worker_id}/heartbeat", {})
        interval = 1.0 / self.probe_rate
        next_at = time.perf_counter()
        next_beat = 0.0
        while not self._halt.is_set():
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + 5.0
                    await client.request(beat)
                t0 = time.perf_counter()
                s_status, _ = await client.request(submit)
                t1 = time.perf_counter()
                c_status, c_body = await client.request(claim)
                t2 = time.perf_counter()
                tasks = json.loads(c_body).get("tasks", []) if c_status == 200 else []
                with self._lock:
                    if s_status == 201:
                        self.submit_ms.append((t1 - t0) * 1000)
                    if c_status == 200:
                        self.claim_ms.append((t2 - t1) * 1000)
                    if not tasks:
                        self.probe_misses += 1
                if c_status != 200:
                    self._error(f"probe claim {c_status}: {c_body[:200]!r}")
                if tasks:
                    done = {
                        "worker_id": worker_id,
                        "tasks": [
                            {"task_id": t["task_id"], "lease_token": t["lease_token"]}
                            for t in tasks
                        ],
                    }
                    await client.request(self._req("POST", "/api/v1/tasks/complete", done))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self._error(f"probe: {exc!r}")
                await client.close()
                client = RawHttpClient("127.0.0.1", self.port)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await client.close()


class SqlProbe(threading.Thread):
    """The claim statement itself, timed from a plain connection: the broker's task_claim (from
    queries.sql) for a task type of its own, after inserting one such task; then completed.
    Beside the HTTP probe it separates PostgreSQL's share of the claim from the broker's."""

    TYPE = "soak_sql_probe"

    def __init__(self, conninfo: str, rate: float) -> None:
        super().__init__(daemon=True)
        from tq_broker.queries import queries

        self.conninfo, self.rate = conninfo, rate
        self.claim_sql, self.complete_sql = queries()["task_claim"], queries()["task_complete_many"]
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.claim_ms: list[float] = []

    def drain(self) -> list[float]:
        with self._lock:
            out, self.claim_ms = self.claim_ms, []
        return out

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        import psycopg

        insert = (
            "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds,"
            " max_retries) VALUES (gen_random_uuid(), %s, '', 100, 60, 0)"
        )
        claim = {
            "worker_id": "soak-sql-probe",
            "task_types": [self.TYPE],
            "max_tasks": 1,
            "lease_ttl_seconds": 30.0,
        }
        with psycopg.connect(
            self.conninfo, autocommit=True, application_name="soak-sql-probe"
        ) as conn:
            while not self._halt.wait(1.0 / self.rate):
                conn.execute(insert, (self.TYPE,))
                t0 = time.perf_counter()
                rows = conn.execute(self.claim_sql, claim).fetchall()
                ms = (time.perf_counter() - t0) * 1000
                with self._lock:
                    self.claim_ms.append(ms)
                if rows:
                    done = {
                        "task_ids": [r[0] for r in rows],
                        "lease_tokens": [r[4] for r in rows],
                        "results": [b"" for _ in rows],
                    }
                    conn.execute(self.complete_sql, done)


# -- the held-open transaction ----------------------------------------------------------------


class Holder:
    """A session elsewhere that opens a snapshot and sits idle in its transaction."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn: Any = None
        self.xid: int | None = None

    def begin(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.conninfo, autocommit=True, application_name="soak-holder")
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        row = self.conn.execute("SELECT txid_current()").fetchone()
        self.xid = int(row[0])

    def release(self) -> None:
        """Commit; a server-side timeout may have ended the session already (that is fine)."""
        import psycopg

        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None


# -- sampling -------------------------------------------------------------------------------


# `state <> 'idle'`: an idle LISTEN session shows, for a moment, a transaction that started at its
# last statement (PostgreSQL reads the notification queue in a transaction of its own), so an
# idle listener would look hours old. Measured: tq-broker-listener, state idle, xact_start = its
# LISTEN at startup.
SESSIONS_SQL = """
SELECT count(*) FILTER (WHERE application_name LIKE 'tq-%'
                          AND state LIKE 'idle in transaction%') AS broker_idle_in_tx,
       count(*) FILTER (WHERE application_name LIKE 'tq-%') AS broker_sessions,
       coalesce(max(extract(epoch FROM now() - xact_start)) FILTER (WHERE state <> 'idle'), 0)
           ::float8 AS oldest_xact_s,
       coalesce(max(extract(epoch FROM now() - xact_start))
                FILTER (WHERE application_name LIKE 'tq-%' AND state <> 'idle'), 0)::float8
           AS broker_oldest_xact_s,
       coalesce(max(extract(epoch FROM now() - state_change))
                FILTER (WHERE application_name LIKE 'tq-%'
                          AND state LIKE 'idle in transaction%'), 0)::float8
           AS broker_idle_in_tx_longest_s,
       coalesce(max(age(backend_xmin)), 0) AS oldest_xmin_age,
       string_agg(DISTINCT application_name || ': ' || left(query, 60), ' | ')
           FILTER (WHERE application_name LIKE 'tq-%' AND state LIKE 'idle in transaction%')
           AS broker_idle_in_tx_queries
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
"""

TABLES_SQL = """
SELECT relname, n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
       autovacuum_count, autoanalyze_count,
       extract(epoch FROM last_autovacuum)::float8 AS last_autovacuum,
       pg_total_relation_size(relid) AS total_bytes, pg_relation_size(relid) AS heap_bytes,
       pg_indexes_size(relid) AS index_bytes
FROM pg_stat_user_tables WHERE relname = ANY(%s)
"""

LATENCY_SQL = """
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lat) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lat) AS p99,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS wait_p50
FROM (SELECT (convert_from(result, 'UTF8')::float8 - extract(epoch FROM created_at)) * 1000
             AS lat,
             extract(epoch FROM claimed_at - created_at) * 1000 AS wait
      FROM tq_tasks
      WHERE finished_at >= to_timestamp(%s) AND finished_at < to_timestamp(%s)
        AND status = 'completed' AND task_type = 'stamp') AS s
"""


class SessionWatch(threading.Thread):
    """Every `interval` s: broker sessions idle in a transaction, oldest transaction / xmin."""

    def __init__(self, conninfo: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.conninfo, self.interval = conninfo, interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []  # every reading, for the JSON
        self._pending: list[dict[str, Any]] = []

    def run(self) -> None:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(
            self.conninfo, autocommit=True, row_factory=dict_row, application_name="soak-monitor"
        ) as conn:
            while not self._halt.is_set():
                row = conn.execute(SESSIONS_SQL).fetchone()
                assert row is not None
                queries = row.pop("broker_idle_in_tx_queries")
                row = {"t": time.time(), **{k: float(v) for k, v in row.items()}}
                if queries:
                    row["idle_in_tx_queries"] = queries
                with self._lock:
                    self.rows.append(row)
                    self._pending.append(row)
                self._halt.wait(self.interval)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Sampler:
    """One row of numbers per interval."""

    def __init__(self, system: System, worker_pids: list[int]) -> None:
        import psutil
        import psycopg
        from psycopg.rows import dict_row

        self.system = system
        self.broker = psutil.Process(system.broker.process.pid)  # type: ignore[union-attr]
        self.workers = [psutil.Process(p) for p in worker_pids]
        self.conn = psycopg.connect(
            system.pg.conninfo(),
            autocommit=True,
            row_factory=dict_row,
            application_name="soak-monitor",
        )
        self._last_t = time.time()
        self._last_cpu = self._cpu()

    def _cpu(self) -> dict[str, float]:
        def cpu(procs: list[Any]) -> float:
            total = 0.0
            for p in procs:
                with contextlib.suppress(Exception):
                    t = p.cpu_times()
                    total += t.user + t.system
            return total

        return {
            "broker": cpu([self.broker]),
            "workers": cpu(self.workers),
            "postgres": cpu(self.system.postgres_processes()),
        }

    @staticmethod
    def _rss_mib(procs: list[Any]) -> float:
        total = 0
        for p in procs:
            with contextlib.suppress(Exception):
                total += p.memory_info().rss
        return round(total / 2**20, 1)

    def sample(
        self,
        phase: str,
        load: dict[str, Any],
        sessions: list[dict[str, Any]],
        sql_claims: list[float],
    ) -> dict[str, Any]:
        now = time.time()
        cpu = self._cpu()
        wall = now - self._last_t
        cpu_pct = {k: round(100 * (cpu[k] - self._last_cpu[k]) / wall, 1) for k in cpu}
        lat = self.conn.execute(LATENCY_SQL, (self._last_t, now)).fetchone() or {}
        tables = {
            r["relname"]: {k: v for k, v in r.items() if k != "relname"}
            for r in self.conn.execute(TABLES_SQL, (list(HOT_TABLES),)).fetchall()
        }
        ready = self.conn.execute(
            "SELECT count(*) AS n FROM tq_tasks WHERE status IN ('pending', 'failed')"
        ).fetchone()
        claims = load["claim_ms"]
        row = {
            "t": now,
            "phase": phase,
            "loadavg": list(os.getloadavg()),
            "cpu_psi": cpu_pressure(),
            "cpu_pct": cpu_pct,
            "rss_mib": {
                "broker": self._rss_mib([self.broker]),
                **{f"worker{i}": self._rss_mib([w]) for i, w in enumerate(self.workers)},
                "postgres_sum": self._rss_mib(self.system.postgres_processes()),
            },
            "submitted_per_s": round(load["submitted"] / wall, 1),
            "submit_errors": load["errors"],
            "submits_behind": load["behind"],
            "probe_claims": len(claims),
            "probe_misses": load["probe_misses"],
            "claim_p50_ms": percentile(claims, 50),
            "claim_p99_ms": percentile(claims, 99),
            "claim_max_ms": max(claims, default=float("nan")),
            "sql_claim_p50_ms": percentile(sql_claims, 50),
            "sql_claim_p99_ms": percentile(sql_claims, 99),
            "probe_submit_p50_ms": percentile(load["submit_ms"], 50),
            "e2e_count": int(lat.get("n") or 0),
            "e2e_p50_ms": float(lat["p50"]) if lat.get("p50") is not None else float("nan"),
            "e2e_p99_ms": float(lat["p99"]) if lat.get("p99") is not None else float("nan"),
            "queue_wait_p50_ms": (
                float(lat["wait_p50"]) if lat.get("wait_p50") is not None else float("nan")
            ),
            "ready_tasks": int(ready["n"]) if ready else 0,
            "tables": tables,
            "broker_idle_in_tx_max": max((s["broker_idle_in_tx"] for s in sessions), default=0),
            "broker_idle_in_tx_longest_s": max(
                (s["broker_idle_in_tx_longest_s"] for s in sessions), default=0
            ),
            "broker_oldest_xact_s_max": max(
                (s["broker_oldest_xact_s"] for s in sessions), default=0
            ),
            "oldest_xact_s": max((s["oldest_xact_s"] for s in sessions), default=0),
            "oldest_xmin_age": max((s["oldest_xmin_age"] for s in sessions), default=0),
            "session_checks": len(sessions),
        }
        self._last_t, self._last_cpu = now, cpu
        return row


# -- autovacuum log ---------------------------------------------------------------------------

_VACUUM_RE = re.compile(
    r"^(\S+ \S+) \S+ \[\d+\] LOG:  automatic vacuum of table \"[^.]+\.[^.]+\.(\w+)\""
)
_TUPLES_RE = re.compile(
    r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable"
)


_ELAPSED_RE = re.compile(r"elapsed: ([0-9.]+) s")


def autovacuum_runs(log_path: Path) -> list[dict[str, Any]]:
    """Each autovacuum of our tables: when, removed / remaining / dead-but-not-removable."""
    runs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return runs
    for line in lines:
        m = _VACUUM_RE.match(line)
        if m:
            current = {"at": m[1], "table": m[2]}
            runs.append(current)
            continue
        if current is None:
            continue
        t = _TUPLES_RE.search(line)
        if t and "removed" not in current:
            current.update(removed=int(t[1]), remain=int(t[2]), not_removable=int(t[3]))
        e = _ELAPSED_RE.search(line)
        if e and "elapsed_s" not in current:
            current["elapsed_s"] = float(e[1])
    return [r for r in runs if r["table"].startswith("tq_")]


# -- the run --------------------------------------------------------------------------------


def run_phases(args: argparse.Namespace, system: System, procs: list[Any]) -> dict[str, Any]:
    load = Load(system.port, args.rate, args.probe_rate)
    watch = SessionWatch(system.pg.conninfo(), args.session_check_seconds)
    sampler = Sampler(system, [p.pid for p in procs])
    holder = Holder(system.pg.conninfo())
    sql_probe = SqlProbe(system.pg.conninfo(), args.probe_rate)
    plan = [("steady", args.minutes * 60.0)]
    if args.hold_minutes > 0:
        plan += [("hold", args.hold_minutes * 60.0), ("recovery", args.recovery_minutes * 60.0)]
    samples: list[dict[str, Any]] = []
    marks: dict[str, float] = {}
    load.start()
    watch.start()
    sql_probe.start()
    t0 = time.time()
    marks["start"] = t0
    try:
        for phase, seconds in plan:
            if phase == "hold":
                holder.begin()
                print(f"  hold: transaction xid {holder.xid} open, idle", flush=True)
            marks[phase + "_start"] = time.time()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(max(0.0, min(args.sample_seconds, end - time.monotonic())))
                row = sampler.sample(phase, load.drain(), watch.drain(), sql_probe.drain())
                samples.append(row)
                _print_row(row, t0)
                if any(p.poll() is not None for p in procs) or not system.broker.alive():  # type: ignore[union-attr]
                    raise RuntimeError("a worker or the broker exited; logs in " + str(system.tmp))
            if phase == "hold":
                holder.release()
                print("  hold: released", flush=True)
            marks[phase + "_end"] = time.time()
    finally:
        holder.release()
        load.stop()
        watch.stop()
        sql_probe.stop()
    return {
        "samples": samples,
        "marks": marks,
        "session_checks": watch.rows,
        "load_errors": load.error_samples,
    }


def _print_row(r: dict[str, Any], t0: float) -> None:
    tasks = r["tables"].get("tq_tasks", {})
    print(
        f"  {(r['t'] - t0) / 60:5.1f} min {r['phase']:8} submit {r['submitted_per_s']:6.1f}/s "
        f"claim p50 {r['claim_p50_ms']:6.2f} p99 {r['claim_p99_ms']:7.2f} ms "
        f"(sql p50 {r['sql_claim_p50_ms']:5.2f} p99 {r['sql_claim_p99_ms']:6.2f}) "
        f"e2e p50 {r['e2e_p50_ms']:6.1f} | tq_tasks live {tasks.get('n_live_tup', 0):6} "
        f"dead {tasks.get('n_dead_tup', 0):6} {tasks.get('total_bytes', 0) / 2**20:5.1f} MiB "
        f"av {tasks.get('autovacuum_count', 0)} | RSS b {r['rss_mib']['broker']} "
        f"w {r['rss_mib'].get('worker0')}/{r['rss_mib'].get('worker1')} | idle-in-tx "
        f"{r['broker_idle_in_tx_max']:.0f} oldest xact {r['oldest_xact_s']:.0f}s | "
        f"load {r['loadavg'][0] if r['loadavg'] else '?'}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="steady phase")
    parser.add_argument("--hold-minutes", type=float, default=0.0, help="transaction held open")
    parser.add_argument("--recovery-minutes", type=float, default=3.0, help="after the hold")
    parser.add_argument("--rate", type=float, default=150.0, help="submits per second")
    parser.add_argument("--probe-rate", type=float, default=5.0, help="probe claims per second")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--session-check-seconds", type=float, default=1.0)
    parser.add_argument("--retention-seconds", type=float, default=60.0)
    parser.add_argument("--cleanup-interval-seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window-minutes", type=float, default=5.0, help="flatness windows")
    parser.add_argument("--name", default="", help="results/<name>.json (default soak-<phases>)")
    parser.add_argument("--title", default="", help="plot title suffix, e.g. the settings")
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        type=lambda kv: tuple(kv.split("=", 1)),
        metavar="NAME=VALUE",
        help="what-if: ALTER SYSTEM SET NAME = VALUE on the embedded server (repeatable)",
    )
    parser.add_argument("--keep-dir", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--no-snapshot", action="store_true", help="run the live tree")
    args = parser.parse_args()
    name = args.name or ("soak-hold" if args.hold_minutes > 0 else "soak-steady")

    env = environment()
    env["code"] = snapshot_sources(not args.no_snapshot)
    print(f"bench_soak -> {name}: {vars(args)}\n  {env['uptime_at_start']}", flush=True)
    system = System(args)
    os.environ["TQ_API_KEY"] = API_KEY  # the workers' key
    try:
        system.start_postgres()
        system.start_broker()
        settings = system.sql(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(ARRAY"
            + repr(list(HOT_TABLES))
            + ") ORDER BY relname",
            "SELECT name, setting FROM pg_settings WHERE name LIKE 'autovacuum%'"
            " OR name IN ('idle_in_transaction_session_timeout', 'server_version')",
        )
        with workers(
            system.url, "latency_app:worker", args.workers, args.concurrency, None, system.tmp
        ) as procs:
            time.sleep(3)
            result = run_phases(args, system, procs)
        result["autovacuum_runs"] = autovacuum_runs(system.pg.log_path)
    finally:
        system.stop()
        system.cleanup()
    summary = {
        "benchmark": "bench_soak",
        "environment": env,
        "uptime_at_end": uptime(),
        "config": vars(args),
        "table_settings": {r[0]: r[1] for r in settings[0]},
        "server_settings": dict(settings[1]),
        **result,
    }
    from soak_plot import plot, summarize, without_samples

    summary["summary"] = summarize(summary, args.window_minutes * 60)
    path = write_result(name, summary)
    kept = write_result(f"{name}.summary", without_samples(summary))
    png = plot(summary, RESULTS_DIR / f"{name}.png", args.title)
    print(json.dumps(summary["summary"], indent=2, default=str))
    print(f"  {summary['uptime_at_end']}\n  wrote {path}, {kept} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
