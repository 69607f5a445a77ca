"""Pod deletion costs from the broker's worker list: idle pods go first on a scale-in."""

from __future__ import annotations

import datetime

from tq_client.models import WorkerInfo
from tq_operator.deletion_cost import annotation_changes, deletion_costs, worker_hostname

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def worker(worker_id: str, current_tasks: int) -> WorkerInfo:
    return WorkerInfo(
        worker_id=worker_id,
        registered_at=NOW,
        last_heartbeat=NOW,
        current_tasks=current_tasks,
        cpu_usage_percent=0.0,
        memory_usage_mb=0.0,
    )


def test_worker_hostname_is_the_id_without_prefix_pid_and_suffix() -> None:
    assert worker_hostname("worker-emails-7d9f8c-x2x9z-1-ab12cd") == "emails-7d9f8c-x2x9z"
    assert worker_hostname("worker-host-123-zzzzzz") == "host"


def test_ids_that_are_not_worker_ids_have_no_hostname() -> None:
    assert worker_hostname("emails-7d9f8c-x2x9z") is None
    assert worker_hostname("worker-host-notapid-ab12cd") is None
    assert worker_hostname("worker-onlyhost") is None
    assert worker_hostname("worker--1-abc") is None


def test_busy_pods_cost_more_than_idle_ones_and_unknown_pods_cost_nothing() -> None:
    pods = ["pool-abc-busy1", "pool-abc-idle1", "pool-abc-new01"]
    workers = [
        worker("worker-pool-abc-busy1-1-aaaaaa", 7),
        worker("worker-pool-abc-idle1-1-bbbbbb", 0),
        worker("worker-elsewhere-1-cccccc", 50),
    ]
    assert deletion_costs(pods, workers) == {
        "pool-abc-busy1": 7,
        "pool-abc-idle1": 0,
        "pool-abc-new01": 0,
    }


def test_a_pod_whose_worker_restarted_sums_its_workers() -> None:
    workers = [worker("worker-p-1-aaaaaa", 2), worker("worker-p-9-bbbbbb", 3)]
    assert deletion_costs(["p"], workers) == {"p": 5}


def test_a_pod_name_that_contains_another_is_not_confused_with_it() -> None:
    workers = [worker("worker-pool-a-1-aaaaaa", 4)]
    assert deletion_costs(["pool", "pool-a"], workers) == {"pool": 0, "pool-a": 4}


def test_only_changed_annotations_are_written() -> None:
    costs = {"a": 3, "b": 0, "c": 1}
    current = {"a": "3", "b": None, "c": "2"}
    assert annotation_changes(costs, current) == {"b": "0", "c": "1"}
