"""WorkerPool -> Deployment, as a pure function of the pool and a replica count.

The one thing not to break: the selector. It is immutable on a Deployment, so it holds only
`taskqueue.io/pool: <name>`; labels that may change someday go on the template, never there.

Workers drain on SIGTERM (stop claiming, hand back what has not started, finish what runs,
deregister), so there is no preStop hook: the pod's `terminationGracePeriodSeconds` bounds the
drain, and `--drain-seconds` leaves a margin of it for the final reports and deregistration.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from tq_operator.spec import PoolSpec

POOL_LABEL = "taskqueue.io/pool"
CONTAINER_NAME = "worker"
FIELD_MANAGER = "tq-operator"
# Of the grace period, what the worker keeps for reporting results and deregistering.
DRAIN_MARGIN_SECONDS = 15


def selector_labels(pool_name: str) -> dict[str, str]:
    return {POOL_LABEL: pool_name}


def pod_labels(pool_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "tq-worker",
        "app.kubernetes.io/instance": pool_name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "tq-operator",
        **selector_labels(pool_name),
    }


def selector_string(pool_name: str) -> str:
    """The label selector of a pool's pods, as `kubectl get -l` and the scale API want it."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(pool_name).items())


def drain_seconds(grace_period_seconds: int) -> int:
    """How long running tasks may finish after SIGTERM, within the pod's grace period."""
    if grace_period_seconds > 2 * DRAIN_MARGIN_SECONDS:
        return grace_period_seconds - DRAIN_MARGIN_SECONDS
    return grace_period_seconds // 2


def render_deployment(pool: kopf.Body, spec: PoolSpec, replicas: int) -> dict[str, Any]:
    """The Deployment for `pool` (the WorkerPool object as read from the API) at `replicas`.

    Owned by the pool through kopf.adopt (owner reference, namespace, the pool's own labels);
    named exactly like the pool, so applying it again is idempotent.
    """
    metadata = pool["metadata"]
    name = str(metadata["name"])
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": pod_labels(name)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "template": {
                "metadata": {"labels": pod_labels(name)},
                "spec": _pod_spec(spec),
            },
        },
    }
    kopf.adopt(deployment, owner=pool)
    return deployment


# Kubernetes' "restricted" Pod Security profile: worker pods pass it as rendered.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _pod_spec(spec: PoolSpec) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [_container(spec)],
    }
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [copy.deepcopy(dict(t)) for t in spec.tolerations]
    if spec.affinity:
        pod["affinity"] = copy.deepcopy(dict(spec.affinity))
    return pod


def _container(spec: PoolSpec) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        # $(VAR) is expanded by the kubelet from the env below, so flags and env agree.
        "command": [
            "tq-worker",
            "--app",
            spec.app,
            "--broker-url",
            "$(TQ_BROKER_URL)",
            "--concurrency",
            "$(TQ_CONCURRENCY)",
            "--drain-seconds",
            str(drain_seconds(spec.termination_grace_period_seconds)),
        ],
        "env": _env(spec),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    if spec.resources:
        container["resources"] = copy.deepcopy(dict(spec.resources))
    return container


def _env(spec: PoolSpec) -> list[dict[str, Any]]:
    ours: list[dict[str, Any]] = [
        {"name": "TQ_BROKER_URL", "value": spec.broker_url},
        {"name": "TQ_CONCURRENCY", "value": str(spec.concurrency)},
    ]
    if spec.api_key_secret is not None:
        ours.append(
            {
                "name": "TQ_API_KEY",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": spec.api_key_secret.name,
                        "key": spec.api_key_secret.key,
                    }
                },
            }
        )
    # The user's variables win over ours of the same name (a duplicate name is ambiguous).
    theirs = [copy.deepcopy(dict(e)) for e in spec.env]
    overridden = {e["name"] for e in theirs}
    return [e for e in ours if e["name"] not in overridden] + theirs
