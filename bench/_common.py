"""What the benchmarks add to the tests' process harness (tests/support/processes.py, which
starts and stops the broker): a broker in a fresh data dir with diagnostic settings, a cheap
HTTP/1.1 load generator, wrk integration, CPU/RSS sampling, medians and the JSON summaries.

Benchmarks print numbers; nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
WORKER_BIN = str(VENV_BIN / "tq-worker")

# The scripts run as `python bench/x.py`: the repository root makes the tests' harness importable.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
from tests.support.processes import BrokerProcess, free_port  # noqa: E402

# -- environment ----------------------------------------------------------------------------


def loadavg() -> str:
    """1/5/15-minute load averages, plus CPU pressure (PSI: % of time some task waited for a
    CPU over the last 10 s) where the kernel exposes it: the fairest sign of contention."""
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    psi = cpu_pressure()
    return load if psi is None else f"{load} (cpu psi {psi:.0f}%)"


def cpu_pressure() -> float | None:
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(first.split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average: {loadavg()}"


def git_state() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    status = run("status", "--porcelain", "--untracked-files=no", "--", *PACKAGES)
    return {
        "commit": run("rev-parse", "--short", "HEAD"),
        "uncommitted_changes_in_packages": status.splitlines(),
    }


def environment() -> dict[str, Any]:
    return {
        "git": git_state(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "uptime_at_start": uptime(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- a stable copy of the code under test ------------------------------------------------------

PACKAGES = ("broker/tq_broker", "client/tq_client", "worker-image/tq_worker")


def snapshot_sources(enabled: bool = True, attempts: int = 10) -> dict[str, Any]:
    """Copy the packages under test to a temp dir and put it first on PYTHONPATH, so edits made
    to the working tree while a benchmark runs cannot change (or break) it half-way. The copy
    must import cleanly; a tree caught mid-edit is copied again (up to `attempts` times)."""
    if not enabled:
        return {"snapshot": False}
    for attempt in range(1, attempts + 1):
        dest = Path(tempfile.mkdtemp(prefix="tq-bench-src-", dir="/tmp"))
        for pkg in PACKAGES:
            shutil.copytree(
                REPO / pkg, dest / Path(pkg).name, ignore=shutil.ignore_patterns("__pycache__")
            )
        env = {**os.environ, "PYTHONPATH": f"{dest}:{os.environ.get('PYTHONPATH', '')}"}
        check = subprocess.run(
            [sys.executable, "-c", "import tq_broker.cli, tq_broker.app, tq_worker.cli"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check.returncode == 0:
            os.environ["PYTHONPATH"] = env["PYTHONPATH"]
            atexit.register(shutil.rmtree, dest, True)
            return {"snapshot": True, "path": str(dest), "attempt": attempt}
        shutil.rmtree(dest, ignore_errors=True)
        print(
            f"  working tree does not import ({check.stderr.strip().splitlines()[-1:]}); "
            f"retrying in 30 s ({attempt}/{attempts})",
            flush=True,
        )
        time.sleep(30)
    raise RuntimeError("the working tree never imported cleanly; nothing benchmarked")


# -- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank-with-interpolation percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median3(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def write_result(name: str, summary: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path


def fmt(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


# -- the broker -----------------------------------------------------------------------------


@dataclass
class Broker:
    """`tq-broker --port P --data-dir D` in a fresh temp dir; stopped with SIGTERM."""

    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    wrapper: list[str] = field(default_factory=list)  # replaces [tq-broker], e.g. a profiler
    keep_dir: bool = False
    # Diagnostics only: `ALTER ROLE tq SET k = v` (e.g. synchronous_commit=off), applied after a
    # first start, then the broker is restarted on the same data so every session gets them.
    role_settings: dict[str, str] = field(default_factory=dict)
    # Diagnostics only: log every statement's duration to data/postgres.log (pg_durations()).
    log_statement_durations: bool = False
    process: BrokerProcess | None = None
    tmp: Path | None = None
    startup_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.process is None else self.process.process

    def start(self, timeout: float = 180.0) -> Broker:
        self.port = self.port or free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="tq-bench-", dir="/tmp"))
        os.chmod(self.tmp, 0o755)  # as root, PostgreSQL runs as `postgres` and must reach it
        try:
            self._configure(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, timeout: float) -> None:
        self._launch(timeout)
        if self.role_settings or self.log_statement_durations:
            self.sql(
                *[f"ALTER ROLE tq SET {k} = '{v}'" for k, v in self.role_settings.items()],
                *(
                    ["ALTER SYSTEM SET log_min_duration_statement = 0", "SELECT pg_reload_conf()"]
                    if self.log_statement_durations
                    else []
                ),
            )
            if self.role_settings:
                self._terminate()
                self._launch(timeout)

    def sql(self, *statements: str) -> list[Any]:
        import psycopg

        results: list[Any] = []
        with psycopg.connect(self.database_url(), autocommit=True) as conn:
            for q in statements:
                cur = conn.execute(q)
                results.append(cur.fetchall() if cur.description else None)
        return results

    def _launch(self, timeout: float) -> None:
        assert self.tmp is not None
        # The tests' broker process: auth off (allowed on loopback: the benchmark measures the
        # queue, not API keys or their rate limits), no metrics or gRPC port.
        self.process = BrokerProcess(
            ["--data-dir", str(self.tmp / "data"), "--log-level", "warning"],
            self.tmp / "broker.log",
            env=self.env,
            port=self.port,
            command=self.wrapper,
        )
        t0 = time.monotonic()
        self.process.start(wait=False).wait_healthy(timeout)
        self.startup_seconds = time.monotonic() - t0

    def log_tail(self, n: int = 3000) -> str:
        assert self.tmp is not None
        try:
            return (self.tmp / "broker.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def database_url(self) -> str:
        """The embedded server's URL (Unix socket in the data dir), for post-run SQL. The
        server wants a password: the URL names the password file the broker wrote."""
        assert self.tmp is not None
        data = self.tmp / "data"
        return f"postgresql://tq@/taskqueue?host={data / 'run'}&port=5432&passfile={data}/passfile"

    def stop(self) -> None:
        self._terminate()
        if self.tmp is not None and not self.keep_dir:
            # give the PostgreSQL child (parent-death signal) a moment to leave
            time.sleep(0.5)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _terminate(self) -> None:
        if self.process is not None:
            self.process.stop()

    def pg_durations(self) -> dict[str, dict[str, float]]:
        """Per statement kind: count, total and p50/p99 ms, from the PostgreSQL log."""
        assert self.tmp is not None
        text = (self.tmp / "data" / "postgres.log").read_text(errors="replace")
        entries: list[tuple[float, str]] = []
        current: list[Any] | None = None
        for line in text.splitlines():
            m = re.search(r"duration: ([0-9.]+) ms  (?:statement|execute [^:]*): (.*)", line)
            if m:
                current = [float(m[1]), m[2]]
                entries.append(current)  # type: ignore[arg-type]
            elif current is not None and (line.startswith((" ", "\t")) or not line[:4].isdigit()):
                current[1] += " " + line.strip()
            else:
                current = None
        kinds: dict[str, list[float]] = {}
        for ms, stmt in entries:
            kinds.setdefault(statement_kind(stmt), []).append(ms)
        return {
            k: {
                "count": len(v),
                "total_ms": round(sum(v), 1),
                "mean_ms": round(sum(v) / len(v), 3),
                "p50_ms": round(percentile(v, 50), 3),
                "p99_ms": round(percentile(v, 99), 3),
            }
            for k, v in sorted(kinds.items(), key=lambda kv: -sum(kv[1]))
        }

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def statement_kind(stmt: str) -> str:
    s = " ".join(stmt.split())
    for needle, kind in (
        ("WITH ready AS", "task_claim"),
        ("status = 'completed', result", "task_complete_many"),
        ("unnest(%(task_ids)s::uuid[], %(task_types)s", "task_insert_many"),
        ("unnest($1::uuid[], $2::text[]", "task_insert_many"),
        ("INSERT INTO tq_tasks", "task_insert"),
        ("in_progress_count", "stats"),
        ("connected_workers", "health"),
        ("FROM tq_tasks WHERE task_id", "task_get"),
        ("SET last_heartbeat", "worker_heartbeat"),
        ("lease_expires_at = now() +", "task_renew_leases"),
        ("FROM tq_workers WHERE worker_id", "worker_get"),
        ("WITH expired AS", "task_rescue_expired"),
        ("UPDATE tq_workers SET status = 'offline'", "worker_mark_offline"),
        ("DELETE FROM tq_tasks", "task_delete_finished"),
        ("pg_try_advisory_lock", "leader"),
        ("SELECT 1 AS alive", "leader"),
    ):
        if needle in s:
            return kind
    return "other: " + s[:50]


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def http_json(url: str, body: Any = None, method: str | None = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def submit_batch(url: str, task_type: str, n: int, payload: bytes = b"") -> list[str]:
    """Enqueue n tasks through POST /api/v1/tasks/batch (1000 per request)."""
    ids: list[str] = []
    p64 = base64.b64encode(payload).decode()
    while len(ids) < n:
        k = min(1000, n - len(ids))
        body = {"tasks": [{"task_type": task_type, "payload": p64} for _ in range(k)]}
        answer = http_json(url + "/api/v1/tasks/batch", body)
        ids.extend(t["task_id"] for t in answer["tasks"])
    return ids


# -- process sampling -----------------------------------------------------------------------


def _psutil() -> Any:
    import psutil  # installed with the dev dependencies

    return psutil


def postgres_processes(broker_pid: int) -> list[Any]:
    psutil = _psutil()
    try:
        return [
            p
            for p in psutil.Process(broker_pid).children(recursive=True)
            if "postgres" in (p.name() or "")
        ]
    except psutil.Error:
        return []


def _all_postgres(broker_pid: int) -> list[Any]:
    """The postmaster is the broker's child; its backends are the postmaster's children."""
    return postgres_processes(broker_pid)


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop()."""

    def __init__(self, groups: dict[str, Callable[[], list[Any]]]) -> None:
        self.groups = groups
        self._t0: dict[str, dict[int, float]] = {}
        self._wall = 0.0

    @staticmethod
    def _cpu(procs: list[Any]) -> dict[int, float]:
        out: dict[int, float] = {}
        for p in procs:
            with contextlib.suppress(Exception):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
        return out

    def start(self) -> None:
        self._wall = time.monotonic()
        self._t0 = {name: self._cpu(get()) for name, get in self.groups.items()}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        result: dict[str, float] = {}
        for name, get in self.groups.items():
            now = self._cpu(get())
            before = self._t0.get(name, {})
            used = sum(v - before.get(pid, 0.0) for pid, v in now.items())
            result[f"{name}_cpu_pct"] = round(100.0 * used / wall, 1) if wall > 0 else 0.0
        result["wall_seconds"] = round(wall, 3)
        return result


class RssSampler(threading.Thread):
    """Peak RSS (MiB) of named process groups, sampled every `interval` seconds."""

    def __init__(self, groups: dict[str, Callable[[], list[Any]]], interval: float = 0.05):
        super().__init__(daemon=True)
        self.groups = groups
        self.interval = interval
        self.peak_mib: dict[str, float] = dict.fromkeys(groups, 0.0)
        self.peak_each_mib: dict[str, float] = dict.fromkeys(groups, 0.0)
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for name, get in self.groups.items():
                total = 0
                each = 0
                for p in get():
                    with contextlib.suppress(Exception):
                        rss = p.memory_info().rss
                        total += rss
                        each = max(each, rss)
                self.peak_mib[name] = max(self.peak_mib[name], total / 2**20)
                self.peak_each_mib[name] = max(self.peak_each_mib[name], each / 2**20)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


# -- load generators --------------------------------------------------------------------------


def wrk_path() -> str | None:
    return shutil.which("wrk")


WRK_DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"lat_p50_us": %d, "lat_p90_us": %d, "lat_p99_us": %d, "lat_max_us": %d, ' ..
    '"lat_mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def lua_string(s: str) -> str:
    return "[==[" + s + "]==]"


def run_wrk(
    url: str,
    lua: str,
    connections: int,
    duration: float,
    threads: int = 1,
    cpu: CpuMeter | None = None,
    timeout_s: int = 10,
) -> dict[str, Any]:
    """Run wrk with a Lua script (plus the JSON `done` hook); returns its numbers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua + "\n" + WRK_DONE_LUA)
        script = f.name
    try:
        cmd = [
            wrk_path() or "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={timeout_s}s",
            "-s",
            script,
            url,
        ]
        groups_cpu = None
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        if cpu is not None:
            cpu.start()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=duration + 120)
        if cpu is not None:
            groups_cpu = cpu.stop()
            # wrk has exited and been reaped: its CPU time is in RUSAGE_CHILDREN
            children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (children1.ru_utime - children0.ru_utime) + (
                children1.ru_stime - children0.ru_stime
            )
            groups_cpu["generator_cpu_pct"] = round(100.0 * used / (time.monotonic() - t0), 1)
    finally:
        os.unlink(script)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out}\n{err}")
    data: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    seconds = data["duration_us"] / 1e6
    errors = sum(
        data[k]
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    result = {
        "generator": "wrk",
        "requests": data["requests"],
        "ok": data["requests"] - data["status_errors"],
        "errors": errors,
        "seconds": round(seconds, 3),
        "rps": data["requests"] / seconds if seconds else 0.0,
        "p50_ms": data["lat_p50_us"] / 1000,
        "p90_ms": data["lat_p90_us"] / 1000,
        "p99_ms": data["lat_p99_us"] / 1000,
        "max_ms": data["lat_max_us"] / 1000,
        "mean_ms": data["lat_mean_us"] / 1000,
    }
    if groups_cpu is not None:
        result["cpu"] = groups_cpu
    return result


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection over asyncio streams: far cheaper than httpx."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    @staticmethod
    def build(method: str, path: str, host: str, body: bytes | None = None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + (body or b"")

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        body = await self.reader.readexactly(length) if length else b""
        return status, body


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def run_async(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(coro)


def run_raw_load(
    url: str,
    make_request: Callable[[int], bytes],
    connections: int,
    duration: float,
    cpu: CpuMeter | None = None,
    expect: tuple[int, ...] = (200, 201),
) -> dict[str, Any]:
    """Closed-loop load: `connections` keep-alive clients, each sending back to back."""
    host, port = url.removeprefix("http://").split(":")

    async def main() -> dict[str, Any]:
        clients = [RawHttpClient(host, int(port)) for _ in range(connections)]
        for c in clients:
            await c.connect()
        latencies: list[float] = []
        counters = {"ok": 0, "errors": 0, "seq": 0}
        stop_at = 0.0

        async def one(c: RawHttpClient) -> None:
            while time.perf_counter() < stop_at:
                counters["seq"] += 1
                raw = make_request(counters["seq"])
                t0 = time.perf_counter()
                try:
                    status, _ = await c.request(raw)
                except (OSError, asyncio.IncompleteReadError):
                    counters["errors"] += 1
                    await c.close()
                    await c.connect()
                    continue
                latencies.append(time.perf_counter() - t0)
                if status in expect:
                    counters["ok"] += 1
                else:
                    counters["errors"] += 1

        if cpu is not None:
            psutil = _psutil()
            me = psutil.Process()
            cpu.groups["generator"] = lambda: [me]
            cpu.start()
        t0 = time.perf_counter()
        stop_at = t0 + duration
        await asyncio.gather(*(one(c) for c in clients))
        seconds = time.perf_counter() - t0
        cpu_result = cpu.stop() if cpu is not None else None
        for c in clients:
            await c.close()
        result = {
            "generator": "asyncio-raw",
            "requests": len(latencies),
            "ok": counters["ok"],
            "errors": counters["errors"],
            "seconds": round(seconds, 3),
            "rps": len(latencies) / seconds,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p90_ms": percentile(latencies, 90) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies, default=0) * 1000,
            "mean_ms": (sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
        }
        if cpu_result is not None:
            result["cpu"] = cpu_result
        return result

    result: dict[str, Any] = run_async(main())
    return result


# -- workers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def workers(
    broker_url: str,
    app: str,
    count: int = 1,
    concurrency: int = 4,
    prefetch: int | None = None,
    log_dir: Path | None = None,
    profile_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` tq-worker processes; SIGTERM (drain) on exit. `env`: extra variables for them
    (e.g. the task types a bench app registers)."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": f"{BENCH_DIR}:{os.environ.get('PYTHONPATH', '')}",
    }
    log_dir = log_dir or Path(tempfile.gettempdir())
    logs = []
    try:
        for i in range(count):
            launcher = [WORKER_BIN]
            if profile_dir is not None:  # cProfile writes on the worker's normal exit (SIGTERM)
                out = profile_dir / f"profile_worker_{i}.prof"
                launcher = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "tq_worker"]
            cmd = [
                *launcher,
                "--app",
                app,
                "--broker-url",
                broker_url,
                "--concurrency",
                str(concurrency),
                "--log-level",
                "warning",
                "--drain-seconds",
                "5",
            ]
            if prefetch is not None:
                cmd += ["--prefetch", str(prefetch)]
            log = open(log_dir / f"worker-{os.getpid()}-{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(BENCH_DIR)
                )
            )
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for log in logs:
            log.close()


def worker_available() -> bool:
    try:
        ok = subprocess.run([WORKER_BIN, "--help"], capture_output=True, timeout=30).returncode == 0
        mod = subprocess.run(
            [sys.executable, "-c", "import tq_worker.demo"], capture_output=True, timeout=30
        )
        return ok and mod.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
