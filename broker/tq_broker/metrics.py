"""Prometheus metrics of one broker replica, on /metrics and on the metrics port.

Two kinds, and the rule that keeps sums right across replicas:
- Events this replica caused (status transitions, HTTP requests, task durations, queue waits,
  rate-limited requests) are counters and histograms: each happens on exactly one replica,
  so `sum()` across replicas is the cluster's total.
- The queue's state (pending, scheduled, in progress, dead letters, the oldest ready task's
  age, workers connected) is the same from every replica, so only the leader exports it; the
  others export no sample. A `sum()` is therefore not double-counted. During a leader change
  the series may be absent for a moment. On the leader every one of them is always present:
  `tq_tasks_pending 0` when nothing waits, never a missing series (an alert on "no samples"
  cannot tell an empty queue from a broken exporter).

`tq_tasks_pending` is the contract's unlabelled total; the per-type and priority breakdown
is `tq_tasks_pending_by_type{task_type,priority}`, so `sum(tq_tasks_pending)` never adds the
total to its own parts.

Label cardinality is bounded: the first `task_types_max` task types a replica sees get their
own `task_type` label, every later one counts as `other` (one key creating 50,000 task types
once grew /metrics to 15 MB). The pending gauge shows the `task_types_max` largest types and
sums the rest into `other`; the per-type dead-letter counts and oldest ages keep the same
types (`other` takes the rest: their sum, and their oldest age).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tq_broker.connector import Connector
from tq_broker.leader import Elector

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_SECONDS = 5.0
TASK_TYPES_MAX_DEFAULT = 100
OTHER = "other"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)


@dataclass(frozen=True)
class QueueSnapshot:
    pending: list[tuple[str, str, int]]  # (task_type, priority bucket, count)
    in_progress: int
    workers: int
    scheduled: int = 0  # waiting for schedule_at or a retry's backoff
    oldest_ready_seconds: dict[str, float] = field(default_factory=dict)  # by task_type
    dead_letter: dict[str, int] = field(default_factory=dict)  # by task_type


class TaskTypeLabels:
    """The task_type label values of one replica: the first `limit` seen, then `other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: set[str] = set()

    def __call__(self, task_type: str) -> str:
        if task_type in self._known:
            return task_type
        if len(self._known) < self.limit:
            self._known.add(task_type)
            return task_type
        return OTHER


def top_types(counts: Mapping[str, int], limit: int) -> set[str]:
    """The `limit` task types with the highest counts (ties by name)."""
    return set(sorted(counts, key=lambda t: (-counts[t], t))[:limit])


def top_pending(pending: Iterable[tuple[str, str, int]], limit: int) -> list[tuple[str, str, int]]:
    """The `limit` task types with the most pending tasks; the rest summed as `other`."""
    by_type: dict[str, int] = {}
    rows = list(pending)
    for task_type, _, count in rows:
        by_type[task_type] = by_type.get(task_type, 0) + count
    kept = top_types(by_type, limit)
    merged: dict[tuple[str, str], int] = {}
    for task_type, priority, count in rows:
        key = (task_type if task_type in kept else OTHER, priority)
        merged[key] = merged.get(key, 0) + count
    return [(t, p, n) for (t, p), n in sorted(merged.items())]


def folded(values: Mapping[str, float], kept: set[str], combine: Any) -> dict[str, float]:
    """`values` by task type, with the types not `kept` folded into `other` by `combine`."""
    out: dict[str, float] = {}
    for task_type, value in values.items():
        key = task_type if task_type in kept else OTHER
        out[key] = combine(out[key], value) if key in out else value
    return out


def queue_snapshot(
    waiting: Iterable[Mapping[str, Any]],
    dead: Iterable[Mapping[str, Any]],
    counts: Mapping[str, Any],
    limit: int,
) -> QueueSnapshot:
    """The leader's gauges from the rows of metrics_waiting, metrics_dead_letter and
    metrics_counts, each with at most `limit` task types plus `other`."""
    rows = list(waiting)
    pending = top_pending(((r["task_type"], r["priority"], r["pending"]) for r in rows), limit)
    kept = {task_type for task_type, _, _ in pending}
    oldest: dict[str, float] = {}
    for row in rows:
        task_type = row["task_type"]
        oldest[task_type] = max(oldest.get(task_type, 0.0), float(row["oldest_ready_seconds"]))
    dead_by_type = {r["task_type"]: int(r["dead_letter"]) for r in dead}
    return QueueSnapshot(
        pending=pending,
        in_progress=int(counts["in_progress"]),
        workers=int(counts["workers"]),
        scheduled=sum(int(r["scheduled"]) for r in rows),
        oldest_ready_seconds=folded(oldest, kept, max),
        dead_letter={
            k: int(v)
            for k, v in folded(dead_by_type, top_types(dead_by_type, limit), sum_two).items()
        },
    )


def sum_two(a: float, b: float) -> float:
    return a + b


class QueueStateCollector(Collector):
    """Yields the queue-state gauges from the last snapshot, which only the leader has."""

    def __init__(self) -> None:
        self.snapshot: QueueSnapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        leader = "(exported by the leader only)"
        pending = GaugeMetricFamily("tq_tasks_pending", f"Pending tasks {leader}")
        by_type = GaugeMetricFamily(
            "tq_tasks_pending_by_type",
            f"Pending tasks by task type and priority bucket {leader}",
            labels=["task_type", "priority"],
        )
        scheduled = GaugeMetricFamily(
            "tq_tasks_scheduled",
            f"Tasks waiting for their schedule_at or a retry's backoff {leader}",
        )
        in_progress = GaugeMetricFamily("tq_tasks_in_progress", f"Tasks claimed {leader}")
        oldest = GaugeMetricFamily(
            "tq_oldest_pending_age_seconds",
            f"Seconds the oldest ready, unclaimed task of a type has waited {leader}",
            labels=["task_type"],
        )
        dead = GaugeMetricFamily(
            "tq_tasks_dead_letter",
            f"Dead-lettered tasks by task type {leader}",
            labels=["task_type"],
        )
        workers = GaugeMetricFamily("tq_workers_connected", f"Workers not offline {leader}")
        if snapshot is not None:
            pending.add_metric([], sum(count for _, _, count in snapshot.pending))
            for task_type, priority, count in snapshot.pending:
                by_type.add_metric([task_type, priority], count)
            scheduled.add_metric([], snapshot.scheduled)
            in_progress.add_metric([], snapshot.in_progress)
            for task_type, seconds in sorted(snapshot.oldest_ready_seconds.items()):
                oldest.add_metric([task_type], seconds)
            for task_type, count in sorted(snapshot.dead_letter.items()):
                dead.add_metric([task_type], count)
            workers.add_metric([], snapshot.workers)
        yield from (pending, by_type, scheduled, in_progress, oldest, dead, workers)

    def describe(self) -> Iterable[Metric]:
        return []


class BrokerMetrics:
    def __init__(self, task_types_max: int = TASK_TYPES_MAX_DEFAULT) -> None:
        self.task_type_label = TaskTypeLabels(task_types_max)
        self._render_lock: asyncio.Lock | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks = Counter(
            "tq_tasks",
            "Task status transitions made by this replica",
            ["status", "task_type"],
            registry=r,
        )
        self.task_duration = Histogram(
            "tq_task_duration_seconds",
            "Claim to completion",
            ["task_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "tq_task_queue_wait_seconds",
            "Ready (run_at) to claimed",
            ["task_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "tq_http_requests", "HTTP requests", ["method", "route", "code"], registry=r
        )
        self.http_duration = Histogram(
            "tq_http_request_duration_seconds",
            "HTTP latency",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "tq_rate_limited_requests", "Requests refused with 429", registry=r
        )
        self.leader = Gauge("tq_leader", "1 while this replica is the leader", registry=r)
        self.queue_state = QueueStateCollector()
        r.register(self.queue_state)

    async def render(self) -> bytes:
        """The exposition text, rendered off the event loop, one scrape at a time (many
        scrapers never stack up renders that starve the requests)."""
        if self._render_lock is None:
            self._render_lock = asyncio.Lock()
        async with self._render_lock:
            return await asyncio.to_thread(generate_latest, self.registry)

    def count_transitions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        counts = collections.Counter((row["status"], row["task_type"]) for row in rows)
        for (status, task_type), count in counts.items():
            self.tasks.labels(status, self.task_type_label(task_type)).inc(count)

    def observe_durations(self, histogram: Histogram, timings: Iterable[Any]) -> None:
        for timing in timings:
            histogram.labels(self.task_type_label(timing.task_type)).observe(timing.seconds)

    async def refresh_queue_state(self, connector: Connector, elector: Elector) -> None:
        """Keep the leader's snapshot fresh; followers export none (a service)."""
        self.leader.set(1 if elector.is_leader else 0)
        if not elector.is_leader:
            self.queue_state.snapshot = None
            return
        waiting = await connector.fetch_all("metrics_waiting")
        dead = await connector.fetch_all("metrics_dead_letter")
        counts = await connector.fetch_one("metrics_counts")
        assert counts is not None
        self.queue_state.snapshot = queue_snapshot(
            waiting, dead, counts, self.task_type_label.limit
        )


class HttpMetrics:
    """Pure ASGI middleware: request count and latency by method, route template and code."""

    def __init__(self, app: ASGIApp, metrics: BrokerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.http_requests.labels(method, route, str(status[0])).inc()
            self.metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)
            if status[0] == 429:
                self.metrics.rate_limited.inc()
