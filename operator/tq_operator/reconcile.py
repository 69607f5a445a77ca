"""The two things the operator does to a pool: apply its Deployment, and poll-and-scale it.

Handlers (handlers.py) call these with the pool's latest body; everything here that decides
is a pure function elsewhere (rendering, scaling, deletion_cost, status). Each pool has a
PoolState in kopf's per-object memo; its lock keeps a spec change and a poll from writing
the Deployment at the same time.
The one thing not to break: when the broker cannot be asked, the replica count is held and
BrokerReachable=False is written; the pool is never scaled on a guess.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.aio import client

from tq_operator.broker import (
    BrokerClient,
    BrokerError,
    BrokerUnreachable,
    BrokerUrlRefused,
    pending,
)
from tq_operator.deletion_cost import (
    DELETION_COST_ANNOTATION,
    annotation_changes,
    deletion_costs,
)
from tq_operator.kube import Kube, SecretUnavailable
from tq_operator.rendering import render_deployment, selector_string
from tq_operator.scaling import Decision, Reason, Scaler, ScalingPolicy
from tq_operator.spec import PoolSpec
from tq_operator.status import BROKER_REACHABLE, condition, utc_timestamp, with_condition


@dataclass
class PoolState:
    """What the operator remembers about one pool between polls (lost on restart)."""

    scaler: Scaler = field(default_factory=Scaler)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_poll: float | None = None
    clock: Callable[[], float] = time.monotonic

    def poll_due(self, interval_seconds: float) -> bool:
        now = self.clock()
        if self.last_poll is not None and now - self.last_poll < interval_seconds:
            return False
        self.last_poll = now
        return True


def policy_of(spec: PoolSpec) -> ScalingPolicy:
    return ScalingPolicy(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_pending_per_replica=spec.target_pending_per_replica,
        activation_pending=spec.activation_pending,
        stabilization_seconds=spec.scale_down_stabilization_seconds,
        cooldown_seconds=spec.cooldown_seconds,
    )


def replicas_for(spec: PoolSpec, existing: int | None) -> int:
    """Replicas to render: a manual pool's own; an autoscaled pool keeps its count, clamped."""
    if not spec.autoscaling:
        return spec.replicas or 0
    if existing is None:
        return spec.min_replicas
    return policy_of(spec).clamp(existing)


async def apply_deployment(
    kube: Kube, pool: kopf.Body, spec: PoolSpec, state: PoolState
) -> client.V1Deployment:
    """Create or update the pool's Deployment from the current spec (an Event if it resized)."""
    meta = pool["metadata"]
    async with state.lock:
        existing = await kube.read_deployment(meta["namespace"], meta["name"])
        current = existing.spec.replicas if existing is not None and existing.spec else None
        replicas = replicas_for(spec, current)
        deployment = await kube.apply_deployment(render_deployment(pool, spec, replicas))
    if current is not None and current != replicas:
        why = "spec.replicas" if not spec.autoscaling else "minReplicas/maxReplicas"
        _scale_event(pool, current, replicas, f"{why} changed")
    return deployment


async def poll(
    kube: Kube,
    broker: BrokerClient,
    pool: kopf.Body,
    spec: PoolSpec,
    state: PoolState,
    status_patch: MutableMapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """One poll: read the queue depth, decide, annotate and scale, write the status.

    Raises kopf.TemporaryError after writing the status when the broker could not be asked.
    """
    meta = pool["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    api_key, observed, error = None, None, None
    try:
        broker.check_url(spec.broker_url)  # before the key is even read
        api_key = broker.own_key or await _api_key(kube, namespace, spec)
        observed = pending(await broker.queue_depth(spec.broker_url, spec.task_types, api_key))
    except (BrokerError, SecretUnavailable) as exc:
        error = exc

    async with state.lock:
        deployment = await kube.read_deployment(namespace, name)
        if deployment is None:  # deleted behind our back, or not created yet
            replicas = replicas_for(spec, None)
            deployment = await kube.apply_deployment(render_deployment(pool, spec, replicas))
        current = deployment.spec.replicas if deployment.spec else None
        decision = _decide(spec, state, 1 if current is None else current, observed)
        if decision.desired < decision.current:
            await _set_deletion_costs(kube, broker, spec, namespace, name, api_key, logger)
        if decision.changed:
            await kube.scale_deployment(namespace, name, decision.desired)
            status_patch["lastScaleTime"] = utc_timestamp()
            _scale_event(pool, decision.current, decision.desired, _why(spec, decision, observed))
            logger.info("scaled %d -> %d (%s)", decision.current, decision.desired, decision.reason)

    dep_status = deployment.status
    status_patch.update(
        replicas=(dep_status.replicas or 0) if dep_status else 0,
        readyReplicas=(dep_status.ready_replicas or 0) if dep_status else 0,
        desiredReplicas=decision.desired,
        selector=selector_string(name),
    )
    if observed is not None:
        status_patch["pending"] = observed
    _broker_condition(pool, status_patch, error)
    if error is not None:
        raise kopf.TemporaryError(
            f"{error_reason(error)}: holding {decision.current} replicas: {error}",
            delay=spec.poll_interval_seconds,
        )


def _decide(spec: PoolSpec, state: PoolState, current: int, observed: int | None) -> Decision:
    if spec.autoscaling:
        return state.scaler.decide(policy_of(spec), current, observed)
    return Decision(spec.replicas or 0, current, Reason.STEADY, spec.replicas)


def error_reason(error: Exception) -> str:
    """The BrokerReachable=False reason for a failed queue-depth read."""
    if isinstance(error, SecretUnavailable):
        return "ApiKeyUnavailable"
    if isinstance(error, BrokerUrlRefused):
        return "BrokerUrlNotAllowed"
    if isinstance(error, BrokerUnreachable):
        return "Unreachable"
    return "Rejected"


async def _api_key(kube: Kube, namespace: str, spec: PoolSpec) -> str | None:
    ref = spec.api_key_secret
    if ref is None:
        return None
    return await kube.read_secret_value(namespace, ref.name, ref.key)


async def _set_deletion_costs(
    kube: Kube,
    broker: BrokerClient,
    spec: PoolSpec,
    namespace: str,
    name: str,
    api_key: str | None,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Before a scale-in: idle pods get the lowest deletion cost, so they go first."""
    try:
        workers = await broker.workers(spec.broker_url, api_key)
    except BrokerError as exc:
        logger.warning("scaling in without deletion costs: %s", exc)
        return
    pods = [
        p
        for p in await kube.list_pods(namespace, selector_string(name))
        if p.metadata and p.metadata.name and not p.metadata.deletion_timestamp
    ]
    costs = deletion_costs([str(p.metadata.name) for p in pods if p.metadata], workers)
    current = {
        str(p.metadata.name): (p.metadata.annotations or {}).get(DELETION_COST_ANNOTATION)
        for p in pods
        if p.metadata
    }
    changes = annotation_changes(costs, current)
    await kube.annotate_pods(
        namespace, {pod: {DELETION_COST_ANNOTATION: cost} for pod, cost in changes.items()}
    )


def _why(spec: PoolSpec, decision: Decision, observed: int | None) -> str:
    if not spec.autoscaling:
        return "spec.replicas of a manual pool"
    return (
        f"{observed} pending tasks (ready + in progress), "
        f"target {spec.target_pending_per_replica} per replica ({decision.reason})"
    )


def _scale_event(pool: kopf.Body, before: int, after: int, why: str) -> None:
    kopf.event(
        pool,
        type="Normal",
        reason="ScaledUp" if after > before else "ScaledDown",
        message=f"Scaled from {before} to {after} replicas: {why}",
    )


def _broker_condition(
    pool: kopf.Body, status_patch: MutableMapping[str, Any], error: Exception | None
) -> None:
    old_status: Mapping[str, Any] = pool.get("status") or {}
    generation = pool["metadata"].get("generation")
    if error is None:
        conditions = with_condition(
            old_status.get("conditions"),
            BROKER_REACHABLE,
            True,
            "QueueDepthRead",
            "the last poll read the queue depth",
            generation=generation,
        )
    else:
        reason = error_reason(error)
        conditions = with_condition(
            old_status.get("conditions"),
            BROKER_REACHABLE,
            False,
            reason,
            f"replicas held: {error}",
            generation=generation,
        )
        previous = condition(old_status, BROKER_REACHABLE)
        if previous is None or previous.get("status") != "False":
            kopf.event(pool, type="Warning", reason=f"Broker{reason}", message=str(error))
    status_patch["conditions"] = conditions
