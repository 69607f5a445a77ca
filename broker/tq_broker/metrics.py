"""Prometheus metrics of one broker replica, on /metrics and on the metrics port.

Two kinds, and the rule that keeps sums right across replicas:
- Events this replica caused (status transitions, HTTP requests, task durations, queue waits,
  rate-limited requests) are counters and histograms: each happens on exactly one replica,
  so `sum()` across replicas is the cluster's total.
- The queue's state (pending by type and priority, in progress, workers connected) is the
  same from every replica, so only the leader exports it; the others export no sample. A
  `sum()` is therefore not double-counted. During a leader change the series may be absent
  for a moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tq_broker.connector import Connector
from tq_broker.leader import Elector

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_SECONDS = 5.0
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)


@dataclass(frozen=True)
class QueueSnapshot:
    pending: list[tuple[str, str, int]]  # (task_type, priority bucket, count)
    in_progress: int
    workers: int


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
    def __init__(self) -> None:
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

    def count_transitions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.tasks.labels(row["status"], row["task_type"]).inc()

    def observe_durations(self, histogram: Histogram, timings: Iterable[Any]) -> None:
        for timing in timings:
            histogram.labels(timing.task_type).observe(timing.seconds)

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
            [(r["task_type"], r["priority"], r["pending"]) for r in pending],
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
