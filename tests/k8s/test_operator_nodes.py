"""The operator on a control plane with a controller-manager, a scheduler and kwok nodes:
pods reach Running, readiness reaches the pool's status, busy pods outlive idle ones on a
scale-in, a spec edit rolls the pods, and deleting a pool garbage-collects its Deployment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tq_broker.embedded import EmbeddedPostgres

from .controlplane import ControlPlane
from .test_operator import (
    Broker,
    OperatorProcess,
    apply,
    get,
    new_namespace,
    pool_manifest,
    pool_status,
    replicas,
    start_broker,
    start_operator,
    wait_for,
)

COST = "controller.kubernetes.io/pod-deletion-cost"


@pytest.fixture(scope="module")
def cp(control_plane_with_nodes: ControlPlane) -> ControlPlane:
    return control_plane_with_nodes


@pytest.fixture(scope="module")
def operator(cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory):
    yield from start_operator(cp, tmp_path_factory.mktemp("op-nodes") / "operator.log")


@pytest.fixture(scope="module")
def broker(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from start_broker(pg, tmp_path_factory.mktemp("broker-nodes") / "broker.log")


def live_pods(cp: ControlPlane, ns: str, pool: str) -> list[dict[str, Any]]:
    pods = cp.kubectl_json("get", "pods", "-n", ns, "-l", f"taskqueue.io/pool={pool}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions") or []
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def running(cp: ControlPlane, ns: str, pool: str, count: int) -> list[dict[str, Any]] | None:
    """Exactly `count` live pods, all Running and Ready (a not-ready pod is removed first)."""
    pods = live_pods(cp, ns, pool)
    return pods if len(pods) == count and all(ready(p) for p in pods) else None


def test_pods_run_and_the_pool_reports_them_ready(
    cp: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    ns = new_namespace(cp, broker)
    apply(cp, ns, pool_manifest("fixed", broker.url, ns, autoscaling=False, replicas=2))
    # The first test of the module: the timeout includes the operator's start.
    wait_for("2 running pods", lambda: running(cp, ns, "fixed", 2), operator, timeout=90)
    wait_for(
        "status.readyReplicas 2",
        lambda: pool_status(cp, ns, "fixed").get("readyReplicas") == 2,
        operator,
    )
    status = pool_status(cp, ns, "fixed")
    assert status["replicas"] == 2
    assert status["desiredReplicas"] == 2
    columns = cp.kubectl("get", "wp", "fixed", "-n", ns, "--no-headers").stdout.split()
    assert columns[3:5] == ["2", "2"]  # DESIRED, READY


def test_busy_pods_carry_a_higher_deletion_cost_and_survive_a_scale_in(
    cp: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    ns = new_namespace(cp, broker)
    manifest = pool_manifest(
        "busy",
        broker.url,
        ns,
        targetPendingPerReplica=10,
        maxReplicas=5,
        scaleDownStabilizationSeconds=1,
        cooldownSeconds=300,
    )
    apply(cp, ns, manifest)
    broker.submit(ns, 30)
    pods = wait_for("3 running pods", lambda: running(cp, ns, "busy", 3), operator, timeout=60)
    busiest, busy, idle = sorted(p["metadata"]["name"] for p in pods)
    # Each pod's worker, as tq-worker names itself inside it: worker-<hostname>-<pid>-<random>.
    held = {busiest: 5, busy: 1, idle: 0}
    for pod, count in held.items():
        worker_id = f"worker-{pod}-1-{uuid.uuid4().hex[:6]}"
        broker.register(worker_id, ns, current_tasks=count)
        if count:
            assert len(broker.claim(worker_id, count)) == count
    # The rest of the work is done elsewhere: 6 tasks in progress remain, so one pod is enough.
    assert broker.drain(ns) == 24

    survivors = wait_for(
        "a scale-in to 1", lambda: running(cp, ns, "busy", 1), operator, timeout=30
    )
    assert replicas(cp, ns, "busy") == 1
    (survivor,) = survivors
    assert survivor["metadata"]["name"] == busiest
    assert survivor["metadata"]["annotations"][COST] == "5"


def test_a_spec_edit_rolls_the_pods(
    cp: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    ns = new_namespace(cp, broker)
    apply(cp, ns, pool_manifest("roll", broker.url, ns, autoscaling=False, replicas=2))
    before = wait_for("2 running pods", lambda: running(cp, ns, "roll", 2), operator, timeout=60)
    edit = {"spec": {"image": "registry.example/worker:2"}}
    cp.kubectl("patch", "wp", "roll", "-n", ns, "--type=merge", "-p", json.dumps(edit))

    def rolled() -> list[dict[str, Any]] | None:
        pods = running(cp, ns, "roll", 2)
        images = {p["spec"]["containers"][0]["image"] for p in pods or []}
        return pods if images == {"registry.example/worker:2"} else None

    after = wait_for("the rolled pods", rolled, operator, timeout=60)
    assert not {p["metadata"]["name"] for p in before} & {p["metadata"]["name"] for p in after}
    sets = cp.kubectl_json("get", "replicasets", "-n", ns, "-l", "taskqueue.io/pool=roll")
    assert len(sets["items"]) == 2


def test_deleting_the_pool_garbage_collects_the_deployment(
    cp: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    ns = new_namespace(cp, broker)
    apply(cp, ns, pool_manifest("gone", broker.url, ns, autoscaling=False, replicas=1))
    wait_for("a running pod", lambda: running(cp, ns, "gone", 1), operator, timeout=60)
    cp.kubectl("delete", "wp", "gone", "-n", ns, "--wait=false")
    wait_for("the pool gone", lambda: get(cp, ns, "workerpool", "gone") is None, operator)
    wait_for("the Deployment gone", lambda: get(cp, ns, "deployment", "gone") is None, operator)
    wait_for("the pods gone", lambda: not live_pods(cp, ns, "gone"), operator)


def test_worker_pods_are_admitted_where_the_restricted_profile_is_enforced(
    cp: ControlPlane, operator: OperatorProcess, broker: Broker
) -> None:
    """Pod Security admission in the real API server: the rendered pods meet `restricted`."""
    ns = new_namespace(cp, broker)
    cp.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    apply(cp, ns, pool_manifest("strict", broker.url, ns, autoscaling=False, replicas=1))
    wait_for("1 running pod", lambda: running(cp, ns, "strict", 1), operator, timeout=60)
    # and the profile is really enforced there: a root pod is refused
    refused = cp.kubectl("run", "root-pod", "-n", ns, "--image=registry.example/x:1", check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr
