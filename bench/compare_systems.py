"""The four systems of `compare.py` side by side: their no-op and stamp handlers, how to start
their workers, and the client-side workloads. Run by `compare.py` as a child process, in the
project's virtualenv for taskqueue and in the peers' virtualenv (celery, rq, procrastinate)
for the others; each run prints one JSON line.

    python compare_systems.py SYSTEM WORKLOAD '{"duration": 5, ...}'

Every handler reports to the same Redis through a few bytes of RESP over a plain socket
(`Resp`), so no system pays for a library the others do not: the no-op `INCR`s a counter (the
drain's progress), the stamp `RPUSH`es its start time (the latency). Redis is there for
Celery and RQ anyway; for taskqueue and procrastinate it is only this side channel.

Environment: `CMP_REDIS` (host:port), `CMP_TQ_URL` (taskqueue broker), `CMP_PG` (libpq
conninfo of procrastinate's PostgreSQL), `CMP_QUEUE` (queue name).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
QUEUE = os.environ.get("CMP_QUEUE", "compare")
DONE_KEY = "cmp:done"
FIRST_KEY = "cmp:first"
STAMPS_KEY = "cmp:stamps"


# -- the side channel ---------------------------------------------------------------------


class Resp:
    """A minimal Redis client (RESP2 over one socket): enough for INCR/SET/GET/RPUSH/LRANGE."""

    def __init__(self, address: str | None = None) -> None:
        host, port = (address or os.environ["CMP_REDIS"]).split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def call(self, *args: str | bytes) -> Any:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self.file.read(n + 2)[:-2]
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")


_local = threading.local()


def _resp() -> Resp:
    conn = getattr(_local, "resp", None)
    if conn is None:
        conn = _local.resp = Resp()
    return conn


def count_done() -> None:
    """What every no-op handler does: count itself; the first one also notes the time."""
    r = _resp()
    if r.call("INCR", DONE_KEY) == 1:
        r.call("SET", FIRST_KEY, repr(time.time()))


def stamp(tag: str) -> None:
    """What every stamp handler does first: record its start time under the submit's tag."""
    started = time.time()
    _resp().call("RPUSH", STAMPS_KEY, f"{tag} {started!r}")


# -- handlers, per system -------------------------------------------------------------------


def rq_noop() -> None:
    count_done()


def rq_stamp(tag: str) -> None:
    stamp(tag)


def _celery_app() -> Any:
    from celery import Celery

    app = Celery("compare", broker=f"redis://{os.environ['CMP_REDIS']}/0")
    app.conf.update(
        task_ignore_result=True,
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="noop")
    def noop() -> None:
        count_done()

    @app.task(name="stamp")
    def celery_stamp(tag: str) -> None:
        stamp(tag)

    return app


# procrastinate and taskqueue run async handlers on an event loop (their natural form; a sync
# handler would cost them a thread hop); the Redis report is one short blocking round trip.


def _procrastinate_app() -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["CMP_PG"]))

    @app.task(name="noop", queue=QUEUE)
    async def noop() -> None:
        count_done()

    @app.task(name="stamp", queue=QUEUE)
    async def proc_stamp(tag: str) -> None:
        stamp(tag)

    return app


def _taskqueue_app() -> Any:
    from tq_worker import Worker

    worker = Worker()

    @worker.task("noop")
    async def noop(payload: bytes) -> bytes:
        count_done()
        return b""

    @worker.task("stamp")
    async def tq_stamp(payload: bytes) -> bytes:
        stamp(payload.decode())
        return b""

    return worker


_APPS: dict[str, Callable[[], Any]] = {
    "celery_app": _celery_app,
    "procrastinate_app": _procrastinate_app,
    "taskqueue_app": _taskqueue_app,
}
_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """The apps are built on first use, so each venv imports only its own system's library."""
    if name in _APPS:
        if name not in _built:
            _built[name] = _APPS[name]()
        return _built[name]
    raise AttributeError(name)


# -- workers --------------------------------------------------------------------------------

# Each system's worker setup for WORKER_PROCESSES processes that run handlers, at the
# concurrency that gave it its best drain on the 2-core machine (stated in bench/README.md).
WORKER_PROCESSES = 2


def worker_commands(system: str) -> list[list[str]]:
    py = sys.executable
    bindir = Path(py).parent
    if system == "celery":
        # prefork: one parent that reads from Redis and WORKER_PROCESSES children that run tasks
        return [
            [
                str(bindir / "celery"), "-A", "compare_systems:celery_app", "worker",
                "-P", "prefork", "-c", str(WORKER_PROCESSES), "-Q", QUEUE,
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING",
            ]
        ]  # fmt: skip
    if system == "rq":
        return [
            [
                str(bindir / "rq"), "worker", "--url", f"redis://{os.environ['CMP_REDIS']}/0",
                "--path", str(HERE), "--quiet", "--worker-class", "rq.worker.SimpleWorker", QUEUE,
            ]
            for _ in range(WORKER_PROCESSES)
        ]  # fmt: skip
    if system == "procrastinate":
        return [
            [
                str(bindir / "procrastinate"), "--app", "compare_systems.procrastinate_app",
                "worker", "--concurrency", "10", "--queues", QUEUE,
            ]
            for _ in range(WORKER_PROCESSES)
        ]  # fmt: skip
    if system == "taskqueue":
        return [
            [
                str(bindir / "tq-worker"), "--app", "compare_systems:taskqueue_app",
                "--broker-url", os.environ["CMP_TQ_URL"], "--concurrency", "128",
                "--log-level", "warning",
            ]
            for _ in range(WORKER_PROCESSES)
        ]  # fmt: skip
    raise SystemExit(f"unknown system {system}")


class Workers:
    """The system's worker processes, started from bench/ (so the handlers import), stopped
    with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        env = {**os.environ, "PYTHONPATH": f"{HERE}:{os.environ.get('PYTHONPATH', '')}"}
        self.log = open(f"/tmp/cmp-worker-{self.system}.log", "ab")
        for cmd in worker_commands(self.system):
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=HERE,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=self.log,
                    start_new_session=True,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        self.log.close()


# -- clients --------------------------------------------------------------------------------


class Client:
    """One client of one system: `submit()` one no-op, `submit_batch(n)`, `submit_stamp(tag)`.
    Each holds its own connection (keep-alive), as a script or a web process would."""

    def __init__(self, system: str) -> None:
        self.system = system
        if system == "taskqueue":
            from tq_client import TaskQueueClient
            from tq_client.models import SubmitTaskRequest

            self.tq = TaskQueueClient(os.environ["CMP_TQ_URL"])
            self.tq_noop = SubmitTaskRequest(task_type="noop", payload=b"")
        elif system == "celery":
            self.app = __getattr__("celery_app")
            self.noop = self.app.tasks["noop"]
            self.stamp = self.app.tasks["stamp"]
        elif system == "rq":
            from redis import Redis
            from rq import Queue

            self.redis = Redis.from_url(f"redis://{os.environ['CMP_REDIS']}/0")
            self.queue = Queue(QUEUE, connection=self.redis)
        elif system == "procrastinate":
            import procrastinate

            # A client of its own (the module's app is shared by threads)
            self.papp = procrastinate.App(
                connector=procrastinate.PsycopgConnector(
                    conninfo=os.environ["CMP_PG"], min_size=1, max_size=1
                )
            )
            self.papp.open()
            self.pnoop = self.papp.configure_task("noop", queue=QUEUE)
        else:
            raise SystemExit(f"unknown system {system}")

    def submit(self) -> None:
        if self.system == "taskqueue":
            self.tq.submit("noop", b"")
        elif self.system == "celery":
            self.noop.delay()
        elif self.system == "rq":
            self.queue.enqueue(rq_noop)
        else:
            self.pnoop.defer()

    def submit_batch(self, n: int) -> bool:
        """False where the system has no batch submit (Celery: `group` is n messages)."""
        if self.system == "taskqueue":
            self.tq.submit_batch([self.tq_noop] * n)
        elif self.system == "rq":
            from rq import Queue

            self.queue.enqueue_many([Queue.prepare_data(rq_noop) for _ in range(n)])
        elif self.system == "procrastinate":
            self.pnoop.batch_defer(*([{}] * n))
        else:
            return False
        return True

    def submit_stamp(self, tag: str) -> None:
        if self.system == "taskqueue":
            self.tq.submit("stamp", tag.encode())
        elif self.system == "celery":
            self.stamp.delay(tag)
        elif self.system == "rq":
            self.queue.enqueue(rq_stamp, tag)
        else:
            self.papp.configure_task("stamp", queue=QUEUE).defer(tag=tag)

    def close(self) -> None:
        if self.system == "taskqueue":
            self.tq.close()
        elif self.system == "procrastinate":
            self.papp.close()
        elif self.system == "rq":
            self.redis.close()


# -- workloads ------------------------------------------------------------------------------


def sequential(system: str, duration: float) -> dict[str, Any]:
    """One client, one submit after another, for `duration` seconds (after a 1 s warm-up)."""
    c = Client(system)
    try:
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            c.submit()
        n = 0
        t0 = time.perf_counter()
        end = t0 + duration
        while time.perf_counter() < end:
            c.submit()
            n += 1
        return {"submits": n, "rate": n / (time.perf_counter() - t0)}
    finally:
        c.close()


def concurrent(system: str, duration: float, threads: int) -> dict[str, Any]:
    """`threads` clients in this process, each submitting back to back (one of the processes
    `compare.py` runs at once; it sums their rates)."""
    clients = [Client(system) for _ in range(threads)]
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        c = clients[i]
        try:
            c.submit()
        except BaseException:
            barrier.abort()
            raise
        barrier.wait()
        while not stop.is_set():
            c.submit()
            counts[i] += 1

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for t in ts:
        t.join()
    seconds = time.perf_counter() - t0
    for c in clients:
        c.close()
    return {"submits": sum(counts), "rate": sum(counts) / seconds}


def batch(system: str, duration: float, size: int) -> dict[str, Any]:
    """One client submitting batches of `size` for `duration` seconds."""
    c = Client(system)
    try:
        if not c.submit_batch(size):
            return {"rate": None, "note": "no batch submit"}
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration:
            c.submit_batch(size)
            n += size
        return {"tasks": n, "rate": n / (time.perf_counter() - t0)}
    finally:
        c.close()


def fill(system: str, n: int) -> None:
    """Queue n no-ops, in batches where the system has them (Celery: one by one)."""
    c = Client(system)
    try:
        left = n
        while left > 0:
            k = min(1000, left)
            if not c.submit_batch(k):
                for _ in range(k):
                    c.submit()
            left -= k
    finally:
        c.close()


def drain(system: str, tasks: int, timeout: float = 600.0) -> dict[str, Any]:
    """Queue `tasks` no-ops, then start the workers and wait for every handler to have run.
    Rate = (tasks - 1) / (all counted - first handler's count), polled every 10 ms."""
    r = Resp()
    r.call("DEL", DONE_KEY, FIRST_KEY)
    fill(system, tasks)
    launched = time.time()
    with Workers(system):
        deadline = time.monotonic() + timeout
        while True:
            done = int(r.call("GET", DONE_KEY) or 0)
            if done >= tasks:
                finished = time.time()
                break
            if time.monotonic() > deadline:
                return {"rate": None, "note": f"timeout: {done}/{tasks} done"}
            time.sleep(0.01)
    first = float(r.call("GET", FIRST_KEY))
    return {
        "rate": (tasks - 1) / (finished - first),
        "seconds": finished - first,
        "from_launch_seconds": finished - launched,
    }


def latency(system: str, count: int, gap: float) -> dict[str, Any]:
    """With the workers idle, submit `count` stamp tasks one at a time `gap` seconds apart;
    latency = handler start - the moment just before the submit call (same clock)."""
    r = Resp()
    r.call("DEL", STAMPS_KEY, DONE_KEY, FIRST_KEY)
    c = Client(system)
    sent: dict[str, float] = {}
    try:
        with Workers(system):
            # warm-up: until a stamp comes back, the workers are not all up
            deadline = time.monotonic() + 120
            i = 0
            while int(r.call("LLEN", STAMPS_KEY)) < 10:
                if time.monotonic() > deadline:
                    return {"p50_ms": None, "note": "workers never ran a stamp"}
                c.submit_stamp(f"warm{i}")
                i += 1
                time.sleep(0.2)
            time.sleep(1.0)
            for k in range(count):
                tag = f"t{k}"
                sent[tag] = time.time()
                c.submit_stamp(tag)
                time.sleep(gap)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = r.call("LRANGE", STAMPS_KEY, "0", "-1")
                if sum(1 for g in got if g.startswith(b"t")) >= count:
                    break
                time.sleep(0.05)
    finally:
        c.close()
    lat = []
    for g in r.call("LRANGE", STAMPS_KEY, "0", "-1"):
        tag, at = g.decode().split()
        if tag in sent:
            lat.append((float(at) - sent[tag]) * 1000)
    lat.sort()

    def pct(p: float) -> float:
        k = (len(lat) - 1) * p / 100
        lo = int(k)
        hi = min(lo + 1, len(lat) - 1)
        return lat[lo] + (lat[hi] - lat[lo]) * (k - lo)

    return {"p50_ms": pct(50), "p99_ms": pct(99), "n": len(lat), "lost": count - len(lat)}


WORKLOADS: dict[str, Callable[..., dict[str, Any]]] = {
    "sequential": sequential,
    "concurrent": concurrent,
    "batch": batch,
    "drain": drain,
    "latency": latency,
}

if __name__ == "__main__":
    # Through the module, not __main__: RQ and Celery name handlers by their import path.
    import compare_systems

    system, workload, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = compare_systems.WORKLOADS[workload](system, **args)
    print("CMPJSON " + json.dumps(result), flush=True)
