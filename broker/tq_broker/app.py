"""The application factory: `create_app(settings)` wires the store, the elector and the routes.

Nothing runs at import time. The lifespan opens the pool, migrates, starts the background
services, and undoes all of it in reverse on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tq_broker.api import keys, schedules, stream, system, tasks, workers
from tq_broker.api.errors import install_error_handlers
from tq_broker.api.guard import RequestGuard
from tq_broker.api.limits import BodySizeLimit
from tq_broker.api.security import RateLimitHeaders
from tq_broker.auth import AuthConfig, Authenticator, BootstrapKey, OpenStreams
from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.events import CHANNEL as EVENTS_CHANNEL
from tq_broker.events import REGISTRATION_CHECK_SECONDS, EventHub, EventPublisher
from tq_broker.keys import ApiKeyStore, Permission
from tq_broker.leader import AdvisoryLockElector, Elector, KubernetesLeaseService
from tq_broker.listener import Listener
from tq_broker.maintenance.cleaner import Cleaner, CleanerConfig
from tq_broker.maintenance.reaper import Reaper, ReaperConfig
from tq_broker.maintenance.rescuer import Rescuer, RescuerConfig
from tq_broker.maintenance.scheduler import Scheduler, SchedulerConfig
from tq_broker.metrics import BrokerMetrics, HttpMetrics
from tq_broker.migrations import migrate
from tq_broker.notifier import (
    TASK_READY_CHANNEL,
    WORKER_STOP_CHANNEL,
    ReadyCheck,
    TaskReadyNotifier,
)
from tq_broker.ratelimit import ClusterRateLimiter, HeartbeatBudget
from tq_broker.schedules import ScheduleStore
from tq_broker.services import Job, Schedule, ServiceRunner
from tq_broker.settings import BrokerSettings
from tq_broker.task_store import TaskStore
from tq_broker.worker_store import LeaseConfig, WorkerStore
from tq_kube.lease import (
    KubernetesLeaseConfig,
    KubernetesLeaseElector,
    current_namespace,
    default_identity,
    in_cluster,
)

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 15.0  # for the services to stop and close, before the pool closes anyway
KEY_USAGE_FLUSH_SECONDS = 30.0
RELEASE_BODY_MAX_BYTES = 256 * 1024
SMALL_BODY_MAX_BYTES = 64 * 1024
BOOTSTRAP_PERMISSIONS = {
    "worker": frozenset({Permission.PROCESS_TASKS}),
    # The operator reads queue depth for WorkerPools and syncs TaskSchedules into schedules.
    "operator": frozenset({Permission.READ_TASKS, Permission.MANAGE_SCHEDULES}),
}


def connector_config(settings: BrokerSettings) -> ConnectorConfig:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (the CLI starts the embedded one)")
    return ConnectorConfig(
        conninfo=settings.database_url,
        min_connections=settings.pool_min_connections,
        max_connections=settings.pool_max_connections,
        pool_timeout_seconds=settings.pool_timeout_seconds,
        statement_timeout_ms=settings.statement_timeout_ms,
    )


def choose_elector(settings: BrokerSettings, config: ConnectorConfig) -> tuple[Elector, float]:
    """A Kubernetes Lease inside a cluster (or when asked), the advisory lock otherwise."""
    mode = settings.leader_election
    if mode == "lease" or (mode == "auto" and in_cluster()):
        lease_seconds = max(settings.leader_lease_seconds, 1.0)
        elector = KubernetesLeaseElector(
            KubernetesLeaseConfig(
                name=settings.lease_name,
                namespace=settings.lease_namespace or current_namespace(),
                identity=default_identity(),
                lease_seconds=lease_seconds,
                retry_seconds=lease_seconds / 3,
                kubeconfig=settings.kubeconfig,
            )
        )
        return KubernetesLeaseService(elector), lease_seconds / 3
    advisory = AdvisoryLockElector(config, lease_seconds=settings.leader_lease_seconds)
    return advisory, advisory.check_interval_seconds


def lease_config(settings: BrokerSettings) -> LeaseConfig:
    return LeaseConfig(
        lease_ttl_seconds=settings.lease_ttl_seconds,
        backoff_base_seconds=settings.backoff_base_seconds,
        backoff_cap_seconds=settings.backoff_cap_seconds,
        max_result_bytes=settings.max_payload_bytes,
    )


def maintenance_services(
    connector: Connector, settings: BrokerSettings, events: EventPublisher
) -> list[Schedule]:
    """The leader's sweeps."""
    rescuer = Rescuer(
        connector,
        RescuerConfig(
            deadline_grace_seconds=settings.deadline_grace_seconds,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_cap_seconds=settings.backoff_cap_seconds,
        ),
        events,
    )
    reaper = Reaper(connector, ReaperConfig(silent_seconds=settings.worker_silent_seconds))
    cleaner = Cleaner(connector, CleanerConfig(retention_seconds=settings.retention_seconds))
    scheduler = Scheduler(
        connector, SchedulerConfig(fire_retention_seconds=settings.retention_seconds), events
    )
    return [
        Schedule(rescuer, settings.rescue_interval_seconds, leader_only=True),
        Schedule(reaper, settings.rescue_interval_seconds, leader_only=True),
        Schedule(cleaner, settings.cleanup_interval_seconds, leader_only=True),
        Schedule(scheduler, settings.schedule_check_interval_seconds, leader_only=True),
    ]


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """The contract answers validation errors with 400; FastAPI's 422 never leaves the broker."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: BrokerSettings) -> FastAPI:
    config = connector_config(settings)
    admin_key = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    auth_config = AuthConfig(
        enabled=settings.auth_enabled(),
        bootstrap_admin_key=admin_key,
        rate_limit=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        cache_seconds=settings.key_cache_seconds,
        more_bootstrap_keys=tuple(
            BootstrapKey(name, secret, BOOTSTRAP_PERMISSIONS[name])
            for name, secret in settings.bootstrap_keys().items()
        ),
    )
    metrics = BrokerMetrics(settings.metrics_task_types_max)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = Connector(config)
        await connector.open()
        stop = asyncio.Event()
        runner: asyncio.Task[None] | None = None
        try:
            if settings.migrate_on_start:
                applied = await migrate(connector)
                if applied:
                    log.info("applied migrations %s", applied)
            services = replica_services(app, connector, config)
            runner = asyncio.create_task(
                ServiceRunner(services, lambda: app.state.elector.is_leader).run(stop),
                name="services",
            )
            yield
        finally:
            stop.set()
            if runner is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runner, SHUTDOWN_SECONDS)
            await connector.close()

    def replica_services(
        app: FastAPI, connector: Connector, config: ConnectorConfig
    ) -> list[Schedule]:
        """Build the replica's objects into `app.state` and return its background services."""
        events = EventPublisher(connector, on_change=metrics.count_transitions)
        elector, election_interval = choose_elector(settings, config)
        app.state.elector = elector
        notifier = app.state.notifier = TaskReadyNotifier()
        hub = app.state.event_hub = EventHub(connector)
        listener = Listener(
            config,
            {
                TASK_READY_CHANNEL: notifier.on_task_ready,
                WORKER_STOP_CHANNEL: notifier.on_worker_stop,
                EVENTS_CHANNEL: hub.on_notification,
            },
            on_connect=[notifier.wake_all],  # anything may have happened while not listening
        )
        hub.listening = listener.listening
        app.state.store = TaskStore(connector, events, settings.max_payload_bytes)
        app.state.worker_store = WorkerStore(connector, lease_config(settings), events)
        app.state.heartbeat_budget = HeartbeatBudget(
            settings.lease_ttl_seconds,
            settings.heartbeat_interval_seconds,
            burst=settings.heartbeat_budget_per_ttl,
        )
        app.state.keys = ApiKeyStore(connector)
        app.state.schedules = ScheduleStore(connector, max_payload_bytes=settings.max_payload_bytes)
        app.state.open_streams = OpenStreams(settings.streams_per_key_max)
        app.state.authenticator = authenticator = Authenticator(
            app.state.keys, ClusterRateLimiter(connector), auth_config
        )
        return [
            Schedule(elector, election_interval),
            Schedule(listener, 0),
            Schedule(events, 0),
            Schedule(hub, REGISTRATION_CHECK_SECONDS),
            Schedule(ReadyCheck(connector, notifier), settings.claim_poll_interval_seconds),
            *maintenance_services(connector, settings, events),
            Schedule(
                Job("key-usage", authenticator.flush_last_used, authenticator.flush_last_used),
                KEY_USAGE_FLUSH_SECONDS,
            ),
            Schedule(
                Job("metrics-snapshot", lambda: metrics.refresh_queue_state(connector, elector)),
                settings.metrics_refresh_seconds,
            ),
        ]

    app = FastAPI(
        title="taskqueue broker",
        version="0.1.0",
        description="REST API of taskqueue, as in shared/spec/API.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    routers = (tasks.router, workers.router, keys.router, schedules.router, system.router)
    for router in (*routers, stream.router):
        app.include_router(router)
    # Middleware runs outermost-last-added: size limits, the guard, metrics, then headers.
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.add_middleware(  # authenticates before any body is read
        RequestGuard,
        failures_per_second=settings.auth_failures_per_second,
        failures_burst=settings.auth_failures_burst,
    )
    app.add_middleware(
        BodySizeLimit,
        default_max=settings.max_body_bytes,
        per_path={
            # Sized to the route: batches carry payloads, results or error texts (1000 of
            # them); a release carries 1000 leases at most, ~100 bytes each; a claim, nothing.
            **{
                f"/api/v1/tasks/{action}": settings.max_batch_body_bytes
                for action in ("batch", "complete", "fail")
            },
            "/api/v1/tasks/release": RELEASE_BODY_MAX_BYTES,
            "/api/v1/tasks/claim": SMALL_BODY_MAX_BYTES,
            "/api/v1/workers": SMALL_BODY_MAX_BYTES,
        },
    )
    return app
