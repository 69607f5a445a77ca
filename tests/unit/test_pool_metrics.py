"""The operator's WorkerPool gauges: what a poll's status sets, what a failed poll keeps, and
that a deleted pool's series go away (the alert TaskQueueWorkerPoolAtMax reads them)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tq_operator.metrics import PoolMetrics


def gauges(metrics: PoolMetrics) -> dict[tuple[str, str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, s.labels["namespace"], s.labels["workerpool"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_poll_sets_the_pools_gauges_and_a_failed_poll_keeps_the_last_pending() -> None:
    metrics = PoolMetrics()
    metrics.observe("jobs", "mail", 5, {"replicas": 3, "desiredReplicas": 5, "pending": 40})
    metrics.observe("jobs", "sms", 10, {"replicas": 0, "desiredReplicas": 0, "pending": 0})
    assert gauges(metrics) == {
        ("tq_workerpool_replicas", "jobs", "mail"): 3,
        ("tq_workerpool_desired_replicas", "jobs", "mail"): 5,
        ("tq_workerpool_max_replicas", "jobs", "mail"): 5,
        ("tq_workerpool_pending", "jobs", "mail"): 40,
        ("tq_workerpool_replicas", "jobs", "sms"): 0,
        ("tq_workerpool_desired_replicas", "jobs", "sms"): 0,
        ("tq_workerpool_max_replicas", "jobs", "sms"): 10,
        ("tq_workerpool_pending", "jobs", "sms"): 0,
    }
    # The broker could not be asked: the status has no pending; the last value stays.
    metrics.observe("jobs", "mail", 6, {"replicas": 5, "desiredReplicas": 5})
    found = gauges(metrics)
    assert found[("tq_workerpool_pending", "jobs", "mail")] == 40
    assert found[("tq_workerpool_replicas", "jobs", "mail")] == 5
    assert found[("tq_workerpool_max_replicas", "jobs", "mail")] == 6


def test_a_deleted_pool_leaves_no_series() -> None:
    metrics = PoolMetrics()
    metrics.observe("jobs", "mail", 5, {"replicas": 3, "desiredReplicas": 5, "pending": 40})
    metrics.observe("jobs", "sms", 5, {"replicas": 1})
    metrics.forget("jobs", "mail")
    metrics.forget("jobs", "never-seen")
    assert {pool for _, _, pool in gauges(metrics)} == {"sms"}
