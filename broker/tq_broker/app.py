"""The application factory: `create_app(settings)` wires the store, the elector and the routes.

Nothing runs at import time. The lifespan opens the pool, migrates, starts the background
services, and undoes all of it in reverse on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tq_broker.api import keys, stream, system, tasks, workers
from tq_broker.api.errors import install_error_handlers
from tq_broker.api.limits import BodySizeLimit
from tq_broker.api.security import RateLimitHeaders
from tq_broker.auth import AuthConfig, Authenticator
from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.events import EventHub, EventPublisher
from tq_broker.keys import ApiKeyStore
from tq_broker.leader import AdvisoryLockElector, Elector
from tq_broker.maintenance.cleaner import Cleaner, CleanerConfig
from tq_broker.maintenance.reaper import Reaper, ReaperConfig
from tq_broker.maintenance.rescuer import Rescuer, RescuerConfig
from tq_broker.maintenance.runner import MaintenanceRunner, Scheduled
from tq_broker.metrics import BrokerMetrics, HttpMetrics
from tq_broker.migrations import migrate
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.ratelimit import ClusterRateLimiter
from tq_broker.settings import BrokerSettings
from tq_broker.store import TaskStore
from tq_broker.worker_store import LeaseConfig, WorkerStore
from tq_client.lease import KubernetesLeaseElector, current_namespace, default_identity, in_cluster
from tq_client.lease import LeaseConfig as KubeLeaseConfig

log = logging.getLogger(__name__)


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


def choose_elector(settings: BrokerSettings, config: ConnectorConfig) -> Elector:
    """A Kubernetes Lease inside a cluster (or when asked), the advisory lock otherwise."""
    mode = settings.leader_election
    if mode == "lease" or (mode == "auto" and in_cluster()):
        return KubernetesLeaseElector(
            KubeLeaseConfig(
                name=settings.lease_name,
                namespace=settings.lease_namespace or current_namespace(),
                identity=default_identity(),
                lease_seconds=max(settings.leader_lease_seconds, 1.0),
                retry_seconds=max(settings.leader_lease_seconds, 1.0) / 3,
                kubeconfig=settings.kubeconfig,
            )
        )
    return AdvisoryLockElector(config, lease_seconds=settings.leader_lease_seconds)


def lease_config(settings: BrokerSettings) -> LeaseConfig:
    return LeaseConfig(
        lease_ttl_seconds=settings.lease_ttl_seconds,
        backoff_base_seconds=settings.backoff_base_seconds,
        backoff_cap_seconds=settings.backoff_cap_seconds,
        claim_poll_interval_seconds=settings.claim_poll_interval_seconds,
        max_result_bytes=settings.max_payload_bytes,
    )


def maintenance_services(
    connector: Connector, settings: BrokerSettings, events: EventPublisher
) -> list[Scheduled]:
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
    return [
        Scheduled(rescuer, settings.rescue_interval_seconds),
        Scheduled(reaper, settings.rescue_interval_seconds),
        Scheduled(cleaner, settings.cleanup_interval_seconds),
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
    )
    metrics = BrokerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = Connector(config)
        await connector.open()
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []

        def start(name: str, coroutine: Coroutine[Any, Any, None]) -> None:
            background.append(asyncio.create_task(coroutine, name=name))

        try:
            if settings.migrate_on_start:
                applied = await migrate(connector)
                if applied:
                    log.info("applied migrations %s", applied)
            events = EventPublisher(connector, on_change=metrics.count_transitions)
            elector = choose_elector(settings, config)
            app.state.elector = elector
            app.state.notifier = notifier = TaskReadyNotifier(config)
            app.state.event_hub = hub = EventHub(config, connector)
            app.state.store = TaskStore(connector, settings.max_payload_bytes, events)
            app.state.worker_store = WorkerStore(connector, lease_config(settings), events)
            app.state.keys = ApiKeyStore(connector)
            app.state.authenticator = authenticator = Authenticator(
                app.state.keys, ClusterRateLimiter(connector), auth_config
            )
            services = maintenance_services(connector, settings, events)
            start("elector", elector.run(stop))
            start("notifier", notifier.run(stop))
            start("events", hub.run(stop))
            start("event-publisher", events.run(stop))
            start("maintenance", MaintenanceRunner(elector, services).run(stop))
            start("key-usage", authenticator.flush_last_used(stop))
            start(
                "metrics",
                metrics.refresh_queue_state(
                    connector, elector, stop, settings.metrics_refresh_seconds
                ),
            )
            yield
        finally:
            stop.set()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 10)
            await connector.close()

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
    for router in (tasks.router, workers.router, keys.router, system.router, stream.router):
        app.include_router(router)
    # Middleware runs outermost-last-added: size limits first, then metrics, then headers.
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.add_middleware(
        BodySizeLimit,
        default_max=settings.max_body_bytes,
        per_path={
            f"/api/v1/tasks/{action}": settings.max_batch_body_bytes
            for action in ("batch", "complete", "fail", "release")
        },
    )
    return app
