"""Faults, and the schedules that inject them.

Each fault starts, lasts its duration, and heals; the nemesis records both ends with the time
so a failing history can be read next to what was done to the cluster. A schedule is drawn
from a seed (printed with every run), so a failing run can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

from .harness import WORKER_DRAIN_SECONDS

DRAIN_BURST_TASKS = 240  # 72 slot-seconds of work for 16 slots: a backlog of several seconds
PREFETCH_WAIT_SECONDS = 10.0

if TYPE_CHECKING:
    from ..support.processes import WorkerProcess
    from .harness import ChaosCluster


@dataclass(frozen=True)
class Fault:
    name: str
    duration: float  # seconds between start and heal
    start: Callable[[ChaosCluster], str]  # returns what it did, for the record
    heal: Callable[[ChaosCluster], None]


def _signal_worker(sig: signal.Signals, what: str) -> Callable[[ChaosCluster], str]:
    def start(c: ChaosCluster) -> str:
        worker = random.choice(c.workers)
        worker.signal(sig)
        c.faulted_workers.append(worker)
        return f"{what} worker {worker.name} (pid {worker.pid})"

    return start


_kill_worker = _signal_worker(signal.SIGKILL, "kill -9")
_pause_worker = _signal_worker(signal.SIGSTOP, "SIGSTOP")


def _restart_workers(c: ChaosCluster) -> None:
    while c.faulted_workers:
        c.faulted_workers.pop().revive()


def _drain_worker(c: ChaosCluster) -> str:
    """A rolling update during a backlog: the worker holds claimed, unstarted tasks (its
    prefetch) when it gets SIGTERM, and must hand them back rather than sit on them."""
    worker = random.choice(c.workers)
    worker.signal(signal.SIGCONT)  # a paused worker would never see the SIGTERM
    if c.clients is not None:
        c.clients.burst(DRAIN_BURST_TASKS)
    holding = _wait_until_prefetched(c, worker)
    worker.signal(signal.SIGTERM)
    c.draining_workers.append(worker)
    c.graceful_stops.append((worker.pid, time.time()))
    return (
        f"SIGTERM worker {worker.name} (pid {worker.pid}) holding {holding} tasks after a burst "
        f"of {DRAIN_BURST_TASKS}: drain, hand back what it has not started"
    )


def _wait_until_prefetched(c: ChaosCluster, worker: WorkerProcess) -> int:
    """Until the worker holds more tasks than it runs at once (so some are unstarted), at most
    PREFETCH_WAIT_SECONDS: a worker restarted by the step before may still be registering."""
    deadline = time.monotonic() + PREFETCH_WAIT_SECONDS
    held = 0
    while time.monotonic() < deadline:
        with psycopg.connect(c.conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tq_tasks WHERE status = 'in_progress' AND worker_id LIKE %s",
                (f"%-{worker.pid}-%",),
            ).fetchone()
        held = int(row[0]) if row else 0
        if held > worker.concurrency:
            break
        time.sleep(0.05)
    return held


def _stop_worker(c: ChaosCluster) -> str:
    """A scale-in: SIGTERM with no burst, so the worker is most likely idle, its long-poll
    waiting at the broker. The stop must cost no task an attempt (the checker's rule)."""
    worker = random.choice(c.workers)
    worker.signal(signal.SIGCONT)
    worker.signal(signal.SIGTERM)
    c.draining_workers.append(worker)
    c.graceful_stops.append((worker.pid, time.time()))
    return f"SIGTERM worker {worker.name} (pid {worker.pid}), most likely idle"


def _restart_drained_workers(c: ChaosCluster) -> None:
    while c.draining_workers:
        worker = c.draining_workers.pop()
        worker.wait_exit(WORKER_DRAIN_SECONDS + 10)
        worker.start()  # a rolling update's new pod


def _kill_broker(leader: bool) -> Callable[[ChaosCluster], str]:
    def start(c: ChaosCluster) -> str:
        found = c.leader() if leader else None
        broker = found or random.choice(c.brokers)
        assert broker.process is not None
        pid = broker.process.pid
        broker.kill()
        c.faulted_brokers.append(broker)
        which = "the leader" if found else "no leader found: any" if leader else "any"
        return f"kill -9 broker :{broker.port} (pid {pid}, {which})"

    return start


def _pause_leader(c: ChaosCluster) -> str:
    found = c.leader()
    broker = found or random.choice(c.brokers)
    broker.signal(signal.SIGSTOP)
    c.faulted_brokers.append(broker)
    return f"SIGSTOP broker :{broker.port} ({'the leader' if found else 'no leader found: any'})"


def _restart_brokers(c: ChaosCluster) -> None:
    while c.faulted_brokers:
        c.faulted_brokers.pop().revive()


def _kill_postgres(c: ChaosCluster) -> str:
    pid = c.pg.pid
    assert pid is not None
    os.kill(pid, signal.SIGQUIT)  # immediate shutdown: no checkpoint, crash recovery on start
    return f"PostgreSQL immediate stop (postmaster {pid})"


def _start_postgres(c: ChaosCluster) -> None:
    process = c.pg._process
    if process is not None:
        process.wait(30)
    c.pg.start()


def _partition(c: ChaosCluster) -> str:
    c.link.cut()
    return f"partition worker {c.partitioned_worker.name} ({c.link.kind})"


def _reconnect(c: ChaosCluster) -> None:
    c.link.heal()


def _starve_cpu(c: ChaosCluster) -> str:
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    c.burners.extend(burners)
    return f"CPU starvation: {len(burners)} busy processes"


def _feed_cpu(c: ChaosCluster) -> None:
    c.feed_cpu()


def catalogue(lease_ttl: float) -> list[Fault]:
    """Every kind of fault once; pauses outlast the lease so the lease is lost."""
    past_lease = 2.5 * lease_ttl
    return [
        Fault("kill-worker", 1.0, _kill_worker, _restart_workers),
        Fault("drain-worker", 1.0, _drain_worker, _restart_drained_workers),
        Fault("stop-worker", 1.0, _stop_worker, _restart_drained_workers),
        Fault("kill-leader", 2.0, _kill_broker(leader=True), _restart_brokers),
        Fault("kill-broker", 2.0, _kill_broker(leader=False), _restart_brokers),
        Fault("pause-worker", past_lease, _pause_worker, _restart_workers),
        Fault("pause-leader", past_lease, _pause_leader, _restart_brokers),
        Fault("restart-postgres", 2.0, _kill_postgres, _start_postgres),
        Fault("partition-worker", 3.0 * lease_ttl, _partition, _reconnect),
        Fault("starve-cpu", 8.0, _starve_cpu, _feed_cpu),
    ]


@dataclass(frozen=True)
class Step:
    faults: tuple[Fault, ...]  # started together, healed together
    gap: float  # quiet seconds after the heal


@dataclass(frozen=True)
class Profile:
    name: str
    seed: int
    steps: tuple[Step, ...]
    bound_seconds: float  # every task is terminal this long after it was acknowledged

    @property
    def seconds(self) -> float:
        return sum(max(f.duration for f in s.faults) + s.gap for s in self.steps)


def short_profile(seed: int, lease_ttl: float) -> Profile:
    """Each fault once, in an order drawn from the seed: about two minutes."""
    rng = random.Random(seed)
    faults = catalogue(lease_ttl)
    rng.shuffle(faults)
    steps = tuple(Step((f,), gap=rng.uniform(3, 6)) for f in faults)
    return Profile("short", seed, steps, bound_seconds=60)


def long_profile(seed: int, lease_ttl: float, minutes: float) -> Profile:
    """Faults drawn at random for `minutes`; a third of the steps pair a worker fault with a
    broker or database fault."""
    rng = random.Random(seed)
    faults = catalogue(lease_ttl)
    on_workers = [
        f
        for f in faults
        if f.name
        in ("kill-worker", "drain-worker", "stop-worker", "pause-worker", "partition-worker")
    ]
    elsewhere = [f for f in faults if f not in on_workers]
    steps: list[Step] = []
    total = 0.0
    while total < minutes * 60:
        if rng.random() < 1 / 3:
            chosen: tuple[Fault, ...] = (rng.choice(on_workers), rng.choice(elsewhere))
        else:
            chosen = (rng.choice(faults),)
        step = Step(chosen, gap=rng.uniform(2, 8))
        steps.append(step)
        total += max(f.duration for f in chosen) + step.gap
    return Profile("long", seed, tuple(steps), bound_seconds=90)


@dataclass
class Nemesis:
    """Runs a profile's steps, recording what it did and when.

    It runs on the main thread: PostgreSQL restarted from a thread that later ends would be
    killed by its parent-death signal, which follows the starting thread, not the process.
    """

    cluster: ChaosCluster
    profile: Profile
    record: list[dict[str, object]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        random.seed(self.profile.seed)  # which worker or broker a fault picks
        for step in self.profile.steps:
            started: list[Fault] = []
            stops_before = len(self.cluster.graceful_stops)
            try:
                for fault in step.faults:
                    what = fault.start(self.cluster)
                    started.append(fault)
                    self.record.append({"at": time.time(), "fault": fault.name, "start": what})
                if len(step.faults) > 1:  # a stop during another fault need not be clean
                    del self.cluster.graceful_stops[stops_before:]
                time.sleep(max(f.duration for f in step.faults))
            except Exception as error:
                self.errors.append(f"{step.faults[len(started)].name} failed to start: {error!r}")
            finally:
                for fault in reversed(started):
                    try:
                        fault.heal(self.cluster)
                    except Exception as error:
                        self.errors.append(f"{fault.name} failed to heal: {error!r}")
                    self.record.append({"at": time.time(), "fault": fault.name, "healed": True})
            time.sleep(step.gap)
