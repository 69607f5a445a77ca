"""Prometheus gauges of the WorkerPools this operator scales, for alerts such as "a pool has
run at maxReplicas for 15 minutes with work waiting" (charts/taskqueue/files/
prometheus-rules.yaml). Served by `tq-operator --metrics-port`.

Labels are the pool's namespace and name: one series per pool, gone when the pool is deleted.
Only the replica that holds the Lease polls, so only it exports pool series.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

LABELS = ["namespace", "workerpool"]


class PoolMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.replicas = Gauge(
            "tq_workerpool_replicas", "Pods of the pool's Deployment", LABELS, registry=r
        )
        self.desired = Gauge(
            "tq_workerpool_desired_replicas",
            "Replicas the autoscaler asked for",
            LABELS,
            registry=r,
        )
        self.max_replicas = Gauge(
            "tq_workerpool_max_replicas", "The pool's maxReplicas", LABELS, registry=r
        )
        self.pending = Gauge(
            "tq_workerpool_pending",
            "Ready and running tasks of the pool's types at the last poll",
            LABELS,
            registry=r,
        )

    def observe(
        self, namespace: str, name: str, max_replicas: int, status: Mapping[str, Any]
    ) -> None:
        """Record a poll's outcome from the status it wrote (pending is absent when the broker
        could not be asked: the last known value stays)."""
        labels = (namespace, name)
        self.max_replicas.labels(*labels).set(max_replicas)
        for gauge, key in (
            (self.replicas, "replicas"),
            (self.desired, "desiredReplicas"),
            (self.pending, "pending"),
        ):
            if isinstance(status.get(key), int):
                gauge.labels(*labels).set(status[key])

    def forget(self, namespace: str, name: str) -> None:
        for gauge in (self.replicas, self.desired, self.max_replicas, self.pending):
            try:
                gauge.remove(namespace, name)
            except KeyError:
                continue

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)


POOLS = PoolMetrics()  # the operator's one set of pool gauges (kopf handlers are module-level)
