"""Prometheus metrics of one broker replica, on /metrics and on the metrics port.

Two kinds, and the rule that keeps sums right across replicas:
- Events this replica caused (status transitions, HTTP requests, task durations, queue waits,
  rate-limited requests) are counters and histograms: each happens on exactly one replica,
  so `sum()` across replicas is the cluster's total.
- The queue's state (pending by type and priority, in progress, workers connected) is the
  same from every replica, so only the leader exports it; the others export no sample. A
  `sum()` is therefore not double-counted. During a leader change the series may be absent
  for a moment.

Label cardinality is bounded: the first `task_types_max` task types a replica sees get their
own `task_type` label, every later one counts as `other` (one key creating 50,000 task types
once grew /metrics to 15 MB). The pending gauge shows the `task_types_max` largest types and
sums the rest into `other`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
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


def top_pending(pending: Iterable[tuple[str, str, int]], limit: int) -> list[tuple[str, str, int]]:
    """The `limit` task types with the most pending tasks; the rest summed as `other`."""
    by_type: dict[str, int] = {}
    rows = list(pending)
    for task_type, _, count in rows:
        by_type[task_type] = by_type.get(task_type, 0) + count
    kept = set(sorted(by_type, key=lambda t: (-by_type[t], t))[:limit])
    merged: dict[tuple[str, str], int] = {}
    for task_type, priority, count in rows:
        key = (task_type if task_type in kept else OTHER, priority)
        merged[key] = merged.get(key, 0) + count
    return [(t, p, n) for (t, p), n in sorted(merged.items())]


class QueueStateCollector(Collector):
    """Yields the queue-state gauges from the last snapshot, which only the leader has."""

    def __init__(self) -> None:
        self.snapshot: QueueSnapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        pending = GaugeMetricFamily(
            "tq_tasks_pending",
            "Pending tasks (exported by the leader only)",
            labels=["task_type", "priority"],
        )
        in_progress = GaugeMetricFamily(
            "tq_tasks_in_progress", "Tasks claimed by workers (exported by the leader only)"
        )
        workers = GaugeMetricFamily(
            "tq_workers_connected", "Workers not offline (exported by the leader only)"
        )
        if snapshot is not None:
            for task_type, priority, count in snapshot.pending:
                pending.add_metric([task_type, priority], count)
            in_progress.add_metric([], snapshot.in_progress)
            workers.add_metric([], snapshot.workers)
        yield from (pending, in_progress, workers)

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
        for row in rows:
            self.tasks.labels(row["status"], self.task_type_label(row["task_type"])).inc()

    def observe_durations(self, histogram: Histogram, timings: Iterable[Any]) -> None:
        for timing in timings:
            histogram.labels(self.task_type_label(timing.task_type)).observe(timing.seconds)

    async def refresh_queue_state(self, connector: Connector, elector: Elector) -> None:
        """Keep the leader's snapshot fresh; followers export none (a service)."""
        self.leader.set(1 if elector.is_leader else 0)
        if not elector.is_leader:
            self.queue_state.snapshot = None
            return
        pending = await connector.fetch_all("metrics_pending")
        counts = await connector.fetch_one("metrics_counts")
        assert counts is not None
        self.queue_state.snapshot = QueueSnapshot(
            top_pending(
                ((r["task_type"], r["priority"], r["pending"]) for r in pending),
                self.task_type_label.limit,
            ),
            counts["in_progress"],
            counts["workers"],
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
