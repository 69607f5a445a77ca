"""The WorkerPool CRD on a real API server: schema, CEL rules, defaults, subresources, example.

No operator runs here; everything is the API server's own doing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from .controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "workerpool.yaml"
EXAMPLE = REPO / "examples" / "workerpool.yaml"


def install_crd(cp: ControlPlane) -> None:
    cp.kubectl("apply", "-f", str(CRD))
    cp.kubectl(
        "wait", "--for=condition=Established", "crd/workerpools.taskqueue.io", "--timeout=60s"
    )


@pytest.fixture(scope="module")
def cp(control_plane: ControlPlane) -> ControlPlane:
    install_crd(control_plane)
    return control_plane


@pytest.fixture
def ns(cp: ControlPlane) -> str:
    name = f"tq-crd-{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", name)
    return name


def pool_manifest(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "worker:1",
        "app": "app.tasks:worker",
        "taskTypes": ["send_email"],
        "broker": {"url": "http://broker:8080"},
    }
    base.update(spec)
    return {
        "apiVersion": "taskqueue.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def create(cp: ControlPlane, ns: str, manifest: dict[str, Any], check: bool = True):
    return cp.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(manifest), check=check)


def test_defaults_are_applied(cp: ControlPlane, ns: str) -> None:
    create(
        cp,
        ns,
        pool_manifest("minimal", broker={"url": "http://b", "apiKeySecretRef": {"name": "k"}}),
    )
    spec = cp.kubectl_json("get", "workerpool", "minimal", "-n", ns)["spec"]
    assert spec["concurrency"] == 4
    assert spec["autoscaling"] is True
    assert "replicas" not in spec
    assert (spec["minReplicas"], spec["maxReplicas"]) == (0, 10)
    assert spec["targetPendingPerReplica"] == 10
    assert spec["activationPending"] == 0
    assert spec["pollIntervalSeconds"] == 15
    assert spec["scaleDownStabilizationSeconds"] == 300
    assert spec["cooldownSeconds"] == 300
    assert spec["terminationGracePeriodSeconds"] == 60
    assert spec["broker"]["apiKeySecretRef"] == {"name": "k", "key": "api-key"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"minReplicas": 5, "maxReplicas": 2}, "minReplicas must not be greater than maxReplicas"),
        ({"targetPendingPerReplica": 0}, "targetPendingPerReplica must be at least 1"),
        ({"autoscaling": False}, "replicas is required when autoscaling is false"),
        ({"replicas": 3}, "replicas is only for manual pools"),
        ({"image": None}, "spec.image: Required value"),
        ({"app": "no-colon"}, "spec.app: Invalid value"),
        ({"taskTypes": []}, "spec.taskTypes: Invalid value"),
        ({"taskTypes": ["bad type!"]}, "spec.taskTypes[0]: Invalid value"),
        ({"concurrency": 0}, "spec.concurrency: Invalid value"),
        ({"maxReplicas": 0}, "spec.maxReplicas: Invalid value"),
        ({"pollIntervalSeconds": 0}, "spec.pollIntervalSeconds: Invalid value"),
        ({"broker": {"url": "ftp://broker"}}, "spec.broker.url: Invalid value"),
        ({"broker": {}}, "spec.broker.url: Required value"),
        ({"concurrency": "four"}, "spec.concurrency: Invalid value"),
    ],
)
def test_invalid_pools_are_rejected_by_the_api_server(
    cp: ControlPlane, ns: str, spec: dict[str, Any], expected: str
) -> None:
    proc = create(cp, ns, pool_manifest("bad", **spec), check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    assert cp.kubectl("get", "workerpool", "bad", "-n", ns, check=False).returncode != 0


def test_an_edit_that_breaks_a_rule_is_rejected(cp: ControlPlane, ns: str) -> None:
    create(cp, ns, pool_manifest("edited", minReplicas=1, maxReplicas=3))
    proc = cp.kubectl(
        "patch",
        "wp",
        "edited",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec":{"minReplicas":4}}',
        check=False,
    )
    assert proc.returncode != 0
    assert "minReplicas must not be greater than maxReplicas" in proc.stderr


def test_short_name_and_printer_columns(cp: ControlPlane, ns: str) -> None:
    create(cp, ns, pool_manifest("shown", minReplicas=1, maxReplicas=7))
    out = cp.kubectl("get", "wp", "-n", ns).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "MIN", "MAX", "DESIRED", "READY", "PENDING", "AGE"]
    assert row.split()[:3] == ["shown", "1", "7"]


def test_kubectl_scale_sets_a_manual_pools_replicas(cp: ControlPlane, ns: str) -> None:
    create(cp, ns, pool_manifest("manual", autoscaling=False, replicas=1))
    cp.kubectl("scale", "wp", "manual", "-n", ns, "--replicas=4")
    assert cp.kubectl_json("get", "wp", "manual", "-n", ns)["spec"]["replicas"] == 4
    scale = json.loads(
        cp.kubectl(
            "get", "--raw", f"/apis/taskqueue.io/v1alpha1/namespaces/{ns}/workerpools/manual/scale"
        ).stdout
    )
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 4


def test_kubectl_scale_is_refused_for_an_autoscaled_pool(cp: ControlPlane, ns: str) -> None:
    create(cp, ns, pool_manifest("auto"))
    proc = cp.kubectl("scale", "wp", "auto", "-n", ns, "--replicas=4", check=False)
    assert proc.returncode != 0
    assert "replicas is only for manual pools" in proc.stderr


def test_status_is_a_subresource(cp: ControlPlane, ns: str) -> None:
    create(cp, ns, pool_manifest("st"))
    # A write to the main resource cannot set status.
    cp.kubectl("patch", "wp", "st", "-n", ns, "--type=merge", "-p", '{"status":{"pending":5}}')
    assert "status" not in cp.kubectl_json("get", "wp", "st", "-n", ns)
    cp.kubectl(
        "patch",
        "wp",
        "st",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"pending":5,"desiredReplicas":2}}',
    )
    assert cp.kubectl_json("get", "wp", "st", "-n", ns)["status"]["pending"] == 5


def test_the_example_applies_cleanly(cp: ControlPlane, ns: str) -> None:
    out = cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLE)).stdout
    assert "workerpool.taskqueue.io/emails created" in out
    assert "workerpool.taskqueue.io/reports created" in out
    emails = cp.kubectl_json("get", "wp", "emails", "-n", ns)["spec"]
    assert emails["targetPendingPerReplica"] == 40
    assert emails["autoscaling"] is True
    reports = cp.kubectl_json("get", "wp", "reports", "-n", ns)["spec"]
    assert reports["replicas"] == 2
    assert reports["broker"]["apiKeySecretRef"]["key"] == "api-key"
    # Applying again changes nothing.
    again = cp.kubectl("apply", "-n", ns, "-f", str(EXAMPLE)).stdout
    assert "unchanged" in again
