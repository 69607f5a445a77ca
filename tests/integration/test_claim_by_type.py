"""The claim reads each task type's ready tasks from the type's own index: a worker's claim
costs the same however many tasks of other types wait, and a worker of several types still
gets the best tasks across all of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.queries import queries
from tq_broker.worker_store import ATTEMPTS_KEPT

from .test_worker_protocol import claim, register, submit

BACKLOG = 3000


def submit_batch(api: TestClient, task_type: str, n: int, priority: int = 100) -> None:
    for start in range(0, n, 1000):
        tasks = [{"task_type": task_type, "priority": priority}] * min(1000, n - start)
        response = api.post("/api/v1/tasks/batch", json={"tasks": tasks})
        assert response.status_code == 201, response.text


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def claim_plan(database_url: str, worker_id: str, max_tasks: int) -> list[dict[str, Any]]:
    """The claim's executed plan (rolled back: nothing is claimed), as a list of nodes."""
    params = {
        "worker_id": worker_id,
        "max_tasks": max_tasks,
        "lease_ttl_seconds": 30,
        "any_key": True,
        "key_id": None,
        "attempts_kept": ATTEMPTS_KEPT,
    }
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + queries()["task_claim"], params
        ).fetchone()
        conn.rollback()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return list(plan_nodes(document[0]["Plan"]))


def rows_read(node: dict[str, Any]) -> int:
    loops = int(node["Actual Loops"])
    return int(node["Actual Rows"]) * loops + int(node.get("Rows Removed by Filter", 0)) * loops


def task_scans(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if n.get("Relation Name") == "tq_tasks" and "Scan" in n["Node Type"]]


@pytest.mark.parametrize("statistics", ["stale", "analyzed"])
def test_a_rare_types_claim_reads_only_its_own_ready_tasks(
    api: TestClient, database_url: str, statistics: str
) -> None:
    register(api, "worker-rare-aaaaaa", ("rare",))
    submit_batch(api, "busy", BACKLOG, priority=255)  # better priority, in the way before
    rare = [submit(api, "rare", priority=0) for _ in range(3)]
    if statistics == "analyzed":
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE tq_tasks")

    nodes = claim_plan(database_url, "worker-rare-aaaaaa", 10)
    scans = task_scans(nodes)
    ready = [n for n in scans if n.get("Index Name") == "tq_tasks_ready_type_idx"]
    assert ready, [(n["Node Type"], n.get("Index Name")) for n in scans]
    assert all(n["Node Type"] == "Index Scan" for n in ready)
    # rows read from the ready index: the rare type's 3, not the busy type's 3000
    assert sum(rows_read(n) for n in ready) == 3
    # and the claim's update finds the 3 by primary key: no scan of tq_tasks reads more rows
    assert [rows_read(n) for n in scans] == [3, 3], [(n["Node Type"], rows_read(n)) for n in scans]

    assert sorted(t["task_id"] for t in claim(api, "worker-rare-aaaaaa")) == sorted(rare)


def test_a_busy_types_claim_reads_no_more_than_it_takes(api: TestClient, database_url: str) -> None:
    register(api, "worker-busy-aaaaaa", ("busy",))
    submit_batch(api, "busy", BACKLOG)
    nodes = claim_plan(database_url, "worker-busy-aaaaaa", 16)
    assert [rows_read(n) for n in task_scans(nodes)] == [16, 16]


def test_a_worker_of_several_types_gets_the_best_across_them_and_loses_none(
    api: TestClient,
) -> None:
    register(api, "worker-many-aaaaaa", ("a", "b", "c", "a"))  # a repeated type is one type
    a_low = [submit(api, "a", priority=10) for _ in range(3)]
    b_high = [submit(api, "b", priority=250) for _ in range(2)]
    c_mid = [submit(api, "c", priority=120) for _ in range(3)]
    first = [t["task_id"] for t in claim(api, "worker-many-aaaaaa", max_tasks=4)]
    assert first == [*b_high, *c_mid[:2]]
    # the candidates the first claim looked at but did not take are claimable at once
    second = [t["task_id"] for t in claim(api, "worker-many-aaaaaa", max_tasks=10)]
    assert second == [c_mid[2], *a_low]
    assert claim(api, "worker-many-aaaaaa") == []
