"""kopf handlers: thin glue from WorkerPool events to reconcile.py.

* startup/cleanup: kopf settings, one broker HTTP client and one Kubernetes API client in the
  operator-wide memo, closed at exit;
* create/update/resume: apply the Deployment, record observedGeneration;
* a timer per pool: ticks every TICK_SECONDS and polls when the pool's pollIntervalSeconds
  has passed (kopf's timer interval is one number for all pools; pools choose their own).

The one thing not to break: kopf keeps its own bookkeeping in annotations under taskqueue.io/
(not in status, which the CRD's structural schema would prune), and its finalizer is
`taskqueue.io/operator`: renaming either strands every existing pool.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from tq_operator.broker import BrokerClient
from tq_operator.kube import Kube
from tq_operator.metrics import POOLS
from tq_operator.reconcile import PoolState, apply_deployment, poll
from tq_operator.rendering import selector_string
from tq_operator.spec import GROUP, PLURAL, VERSION, InvalidPoolSpec, PoolSpec, parse_spec

TICK_SECONDS = 1.0
FINALIZER = "taskqueue.io/operator"
ANNOTATION_PREFIX = "taskqueue.io"
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_CLIENT_TIMEOUT_SECONDS = 330
# Comma-separated broker URLs (a trailing * matches a prefix) that WorkerPools may name; the
# chart sets it to its broker Service. Unset: any URL (a warning at startup).
ALLOWED_URLS_ENV = "TQ_OPERATOR_ALLOWED_BROKER_URLS"
# The operator's own read_tasks key; set, it reads no WorkerPool's Secret at all.
OWN_KEY_ENV = "TQ_OPERATOR_API_KEY"

log = logging.getLogger(__name__)


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Scale events are posted explicitly; handler log lines become Events only from WARNING.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    allowed = [u for u in os.environ.get(ALLOWED_URLS_ENV, "").split(",") if u.strip()]
    if not allowed:
        log.warning(
            "%s is not set: WorkerPools may name any broker URL, and the operator sends their "
            "API keys there",
            ALLOWED_URLS_ENV,
        )
    memo["broker"] = BrokerClient(
        allowed_urls=[u.strip() for u in allowed],
        own_key=os.environ.get(OWN_KEY_ENV) or None,
    )
    memo["kube"] = await Kube.connect()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    broker: BrokerClient | None = memo.get("broker")
    kube: Kube | None = memo.get("kube")
    if broker is not None:
        await broker.close()
    if kube is not None:
        await kube.close()


def _pool_state(memo: kopf.Memo) -> PoolState:
    """This pool's state; `memo` here is kopf's per-object copy of the operator memo."""
    state = memo.get("pool")
    if not isinstance(state, PoolState):
        state = memo["pool"] = PoolState()
    return state


def _spec(spec: kopf.Spec) -> PoolSpec:
    try:
        return parse_spec(dict(spec))
    except InvalidPoolSpec as exc:
        raise kopf.PermanentError(str(exc)) from exc


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile_deployment(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    pool_spec = _spec(spec)
    deployment = await apply_deployment(memo["kube"], body, pool_spec, _pool_state(memo))
    patch.status["observedGeneration"] = meta.get("generation")
    patch.status["selector"] = selector_string(str(meta["name"]))
    if deployment.spec is not None and deployment.spec.replicas is not None:
        patch.status["desiredReplicas"] = deployment.spec.replicas


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS)
async def poll_queue_depth(
    body: kopf.Body,
    spec: kopf.Spec,
    memo: kopf.Memo,
    patch: kopf.Patch,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    try:
        pool_spec = parse_spec(dict(spec))
    except InvalidPoolSpec:
        return  # reconcile_deployment reports it once; a timer would say so every tick
    state = _pool_state(memo)
    if not state.poll_due(pool_spec.poll_interval_seconds):
        return
    meta = body["metadata"]
    try:
        await poll(memo["kube"], memo["broker"], body, pool_spec, state, patch.status, logger)
    finally:
        POOLS.observe(meta["namespace"], meta["name"], pool_spec.max_replicas, patch.status)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget_pool_metrics(meta: kopf.Meta, **_: Any) -> None:
    POOLS.forget(str(meta["namespace"]), str(meta["name"]))
