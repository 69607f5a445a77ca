"""WorkerPool spec parsing and the Deployment rendered from it (a pure function)."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from tq_operator.reconcile import replicas_for
from tq_operator.rendering import drain_seconds, render_deployment, selector_string
from tq_operator.spec import InvalidPoolSpec, PoolSpec, SecretKeyRef, parse_spec

UID = "5b1c0f7e-7d5e-4a43-9c53-0d3b7f5b3d11"


def pool(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "registry.example/emails:1.2",
        "app": "emails.tasks:worker",
        "taskTypes": ["send_email", "render_pdf"],
        "broker": {
            "url": "http://tq-broker.taskqueue:8080/",
            "apiKeySecretRef": {"name": "tq-key", "key": "token"},
        },
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "taskqueue.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {
            "name": "emails",
            "namespace": "mail",
            "uid": UID,
            "generation": 3,
            "labels": {"team": "growth"},
        },
        "spec": spec,
    }


def render(raw: dict[str, Any], replicas: int = 2) -> dict[str, Any]:
    return render_deployment(kopf.Body(raw), parse_spec(raw["spec"]), replicas)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container(deployment)["env"]}


def test_spec_defaults_match_the_crd() -> None:
    spec = parse_spec(pool()["spec"])
    assert spec == PoolSpec(
        image="registry.example/emails:1.2",
        app="emails.tasks:worker",
        task_types=("send_email", "render_pdf"),
        broker_url="http://tq-broker.taskqueue:8080",
        api_key_secret=SecretKeyRef("tq-key", "token"),
        concurrency=4,
        min_replicas=0,
        max_replicas=10,
        target_pending_per_replica=10,
        activation_pending=0,
        poll_interval_seconds=15,
        scale_down_stabilization_seconds=300,
        cooldown_seconds=300,
        termination_grace_period_seconds=60,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"minReplicas": 5, "maxReplicas": 2}, "minReplicas"),
        ({"targetPendingPerReplica": 0}, "targetPendingPerReplica"),
        ({"autoscaling": False}, "replicas is required"),
        ({"taskTypes": []}, "taskTypes"),
        ({"broker": {}}, "malformed"),
    ],
)
def test_specs_no_schema_admits_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPoolSpec, match=message):
        parse_spec(pool(**overrides)["spec"])


def test_the_deployment_is_named_after_the_pool_and_owned_by_it() -> None:
    deployment = render(pool())
    meta = deployment["metadata"]
    assert meta["name"] == "emails"
    assert meta["namespace"] == "mail"
    assert "generateName" not in meta
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "taskqueue.io/v1alpha1",
            "kind": "WorkerPool",
            "name": "emails",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_labels_selector_and_replicas() -> None:
    deployment = render(pool(), replicas=7)
    spec = deployment["spec"]
    assert spec["replicas"] == 7
    assert spec["selector"] == {"matchLabels": {"taskqueue.io/pool": "emails"}}
    pod_labels = spec["template"]["metadata"]["labels"]
    assert pod_labels["taskqueue.io/pool"] == "emails"
    assert pod_labels["app.kubernetes.io/name"] == "tq-worker"
    assert pod_labels["app.kubernetes.io/instance"] == "emails"
    assert "team" not in pod_labels  # pool labels must not roll the pods
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "tq-operator"
    assert labels["team"] == "growth"  # kopf.adopt copies the owner's labels
    assert selector_string("emails") == "taskqueue.io/pool=emails"


def test_container_runs_tq_worker_with_the_broker_url_and_key_reference() -> None:
    c = container(render(pool(concurrency=8)))
    assert c["image"] == "registry.example/emails:1.2"
    assert c["command"] == [
        "tq-worker",
        "--app",
        "emails.tasks:worker",
        "--broker-url",
        "$(TQ_BROKER_URL)",
        "--concurrency",
        "$(TQ_CONCURRENCY)",
        "--drain-seconds",
        "45",
    ]
    env = env_of(render(pool(concurrency=8)))
    assert env["TQ_BROKER_URL"] == {
        "name": "TQ_BROKER_URL",
        "value": "http://tq-broker.taskqueue:8080",
    }
    assert env["TQ_CONCURRENCY"]["value"] == "8"
    assert env["TQ_API_KEY"] == {
        "name": "TQ_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "tq-key", "key": "token"}},
    }


def test_without_a_secret_there_is_no_api_key_variable() -> None:
    raw = pool(broker={"url": "http://b:8080"})
    assert "TQ_API_KEY" not in env_of(render(raw))


def test_sigterm_drain_without_pre_stop_hook() -> None:
    deployment = render(pool(terminationGracePeriodSeconds=120))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert "lifecycle" not in pod["containers"][0]
    assert pod["containers"][0]["command"][-1] == "105"


def test_drain_seconds_leave_room_for_the_last_reports() -> None:
    assert drain_seconds(60) == 45
    assert drain_seconds(30) == 15
    assert drain_seconds(10) == 5
    assert drain_seconds(0) == 0


def test_pod_template_overrides_are_passed_through() -> None:
    overrides = {
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": 1}},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
        ],
        "nodeSelector": {"pool": "workers"},
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "serviceAccountName": "emails-worker",
    }
    deployment = render(pool(**overrides))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == overrides["nodeSelector"]
    assert pod["tolerations"] == overrides["tolerations"]
    assert pod["affinity"] == overrides["affinity"]
    assert pod["serviceAccountName"] == "emails-worker"
    assert pod["containers"][0]["resources"] == overrides["resources"]
    env = env_of(deployment)
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert env["DB"]["valueFrom"]["secretKeyRef"]["name"] == "db"


def test_absent_overrides_render_nothing() -> None:
    pod = render(pool())["spec"]["template"]["spec"]
    assert set(pod) == {"terminationGracePeriodSeconds", "securityContext", "containers"}
    assert "resources" not in pod["containers"][0]


def test_worker_pods_meet_the_restricted_pod_security_profile() -> None:
    pod = render(pool())["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_a_user_variable_replaces_ours_of_the_same_name() -> None:
    env = container(render(pool(env=[{"name": "TQ_CONCURRENCY", "value": "99"}])))["env"]
    assert [e for e in env if e["name"] == "TQ_CONCURRENCY"] == [
        {"name": "TQ_CONCURRENCY", "value": "99"}
    ]


def test_rendering_is_pure() -> None:
    raw = pool(env=[{"name": "A", "value": "1"}], nodeSelector={"a": "b"})
    before = copy.deepcopy(raw)
    first = render(raw)
    first["spec"]["template"]["spec"]["nodeSelector"]["a"] = "changed"
    container(first)["env"][-1]["value"] = "changed"
    assert render(raw) == render(copy.deepcopy(before))
    assert raw == before


def test_replicas_rendered_for_manual_and_autoscaled_pools() -> None:
    manual = parse_spec(pool(autoscaling=False, replicas=3)["spec"])
    auto = parse_spec(pool(minReplicas=1, maxReplicas=5)["spec"])
    assert replicas_for(manual, 9) == 3
    assert replicas_for(auto, None) == 1  # a new pool starts at minReplicas
    assert replicas_for(auto, 4) == 4  # a spec edit keeps the autoscaler's count
    assert replicas_for(auto, 9) == 5  # ... within the new bounds
    assert replicas_for(auto, 0) == 1
