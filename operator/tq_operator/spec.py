"""The WorkerPool resource: its coordinates and its spec as a typed, frozen value.

The one thing not to break: the defaults here equal the CRD's (crds/workerpool.yaml). The API
server applies those; these only matter for objects written before a default existed, and a
difference between the two would make the operator act on a spec the user never sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "taskqueue.io"
VERSION = "v1alpha1"
PLURAL = "workerpools"
KIND = "WorkerPool"

CONCURRENCY_DEFAULT = 4
MIN_REPLICAS_DEFAULT = 0
MAX_REPLICAS_DEFAULT = 10
TARGET_PENDING_PER_REPLICA_DEFAULT = 10
ACTIVATION_PENDING_DEFAULT = 0
POLL_INTERVAL_SECONDS_DEFAULT = 15
SCALE_DOWN_STABILIZATION_SECONDS_DEFAULT = 300
COOLDOWN_SECONDS_DEFAULT = 300
TERMINATION_GRACE_PERIOD_SECONDS_DEFAULT = 60
API_KEY_SECRET_KEY_DEFAULT = "api-key"  # noqa: S105  (a key name, not a secret)


class InvalidPoolSpec(ValueError):
    """The spec cannot be acted on (the CRD schema normally prevents this)."""


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str = API_KEY_SECRET_KEY_DEFAULT


@dataclass(frozen=True)
class PoolSpec:
    image: str
    app: str
    task_types: tuple[str, ...]
    broker_url: str
    api_key_secret: SecretKeyRef | None = None
    concurrency: int = CONCURRENCY_DEFAULT
    autoscaling: bool = True
    replicas: int | None = None
    min_replicas: int = MIN_REPLICAS_DEFAULT
    max_replicas: int = MAX_REPLICAS_DEFAULT
    target_pending_per_replica: int = TARGET_PENDING_PER_REPLICA_DEFAULT
    activation_pending: int = ACTIVATION_PENDING_DEFAULT
    poll_interval_seconds: int = POLL_INTERVAL_SECONDS_DEFAULT
    scale_down_stabilization_seconds: int = SCALE_DOWN_STABILIZATION_SECONDS_DEFAULT
    cooldown_seconds: int = COOLDOWN_SECONDS_DEFAULT
    termination_grace_period_seconds: int = TERMINATION_GRACE_PERIOD_SECONDS_DEFAULT
    # Pod template overrides, passed through as the API server stored them.
    resources: Mapping[str, Any] | None = None
    env: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    service_account_name: str | None = None


def parse_spec(spec: Mapping[str, Any]) -> PoolSpec:
    """Read a WorkerPool's `spec`; raises InvalidPoolSpec for what no schema would admit."""
    try:
        broker = spec["broker"]
        secret = broker.get("apiKeySecretRef")
        parsed = PoolSpec(
            image=str(spec["image"]),
            app=str(spec["app"]),
            task_types=tuple(str(t) for t in spec["taskTypes"]),
            broker_url=str(broker["url"]).rstrip("/"),
            api_key_secret=_secret_ref(secret),
            concurrency=int(spec.get("concurrency", CONCURRENCY_DEFAULT)),
            autoscaling=bool(spec.get("autoscaling", True)),
            replicas=None if spec.get("replicas") is None else int(spec["replicas"]),
            min_replicas=int(spec.get("minReplicas", MIN_REPLICAS_DEFAULT)),
            max_replicas=int(spec.get("maxReplicas", MAX_REPLICAS_DEFAULT)),
            target_pending_per_replica=int(
                spec.get("targetPendingPerReplica", TARGET_PENDING_PER_REPLICA_DEFAULT)
            ),
            activation_pending=int(spec.get("activationPending", ACTIVATION_PENDING_DEFAULT)),
            poll_interval_seconds=int(
                spec.get("pollIntervalSeconds", POLL_INTERVAL_SECONDS_DEFAULT)
            ),
            scale_down_stabilization_seconds=int(
                spec.get("scaleDownStabilizationSeconds", SCALE_DOWN_STABILIZATION_SECONDS_DEFAULT)
            ),
            cooldown_seconds=int(spec.get("cooldownSeconds", COOLDOWN_SECONDS_DEFAULT)),
            termination_grace_period_seconds=int(
                spec.get("terminationGracePeriodSeconds", TERMINATION_GRACE_PERIOD_SECONDS_DEFAULT)
            ),
            resources=spec.get("resources"),
            env=tuple(spec.get("env") or ()),
            node_selector=spec.get("nodeSelector"),
            tolerations=tuple(spec.get("tolerations") or ()),
            affinity=spec.get("affinity"),
            service_account_name=spec.get("serviceAccountName"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidPoolSpec(f"spec is incomplete or malformed: {exc!r}") from exc
    _check(parsed)
    return parsed


def _secret_ref(ref: Mapping[str, Any] | None) -> SecretKeyRef | None:
    if not ref:
        return None
    return SecretKeyRef(str(ref["name"]), str(ref.get("key") or API_KEY_SECRET_KEY_DEFAULT))


def _check(spec: PoolSpec) -> None:
    if not spec.task_types:
        raise InvalidPoolSpec("taskTypes must not be empty")
    if spec.min_replicas > spec.max_replicas:
        raise InvalidPoolSpec("minReplicas must not be greater than maxReplicas")
    if spec.target_pending_per_replica < 1:
        raise InvalidPoolSpec("targetPendingPerReplica must be at least 1")
    if not spec.autoscaling and spec.replicas is None:
        raise InvalidPoolSpec("replicas is required when autoscaling is false")
