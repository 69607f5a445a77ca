"""One broker replica, built in one place: `async with open_broker(settings, metrics) as broker:`.

`Broker` owns what a replica runs on: the pool, the stores, the event hub, the authenticator,
the background services and, when asked, the gRPC server. REST (the FastAPI app keeps only this
object in `app.state.broker`), WebSocket and gRPC all serve from the same one, so nothing is
built twice and nothing is built silently: every collaborator is passed in here.

Opening connects, migrates (unless turned off), starts the services and the gRPC server;
closing undoes it in reverse, and the pool is always closed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from tq_broker.metrics import BrokerMetrics
from tq_broker.migrations import migrate
from tq_broker.notifier import (
    TASK_READY_CHANNEL,
    WORKER_STOP_CHANNEL,
    ReadyCheck,
    TaskReadyNotifier,
)
from tq_broker.overview import OverviewQueries
from tq_broker.ratelimit import ClusterRateLimiter, HeartbeatBudget
from tq_broker.ready_announcer import ReadyAnnouncer
from tq_broker.schedules import ScheduleStore
from tq_broker.services import Job, Schedule, ServiceRunner
from tq_broker.settings import BrokerSettings
from tq_broker.task_store import TaskStore
from tq_broker.task_waits import TaskWaits
from tq_broker.worker_store import LeaseConfig, WorkerStore
from tq_kube.lease import (
    KubernetesLeaseConfig,
    KubernetesLeaseElector,
    current_namespace,
    default_identity,
    in_cluster,
)

if TYPE_CHECKING:
    from tq_broker.rpc.server import GrpcServer

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 15.0  # for the services to stop and close, before the pool closes anyway
KEY_USAGE_FLUSH_SECONDS = 30.0
BOOTSTRAP_PERMISSIONS = {
    "worker": frozenset({Permission.PROCESS_TASKS}),
    # The operator reads queue depth for WorkerPools and syncs TaskSchedules into schedules.
    "operator": frozenset({Permission.READ_TASKS, Permission.MANAGE_SCHEDULES}),
}


@dataclass(frozen=True)
class Broker:
    """What the routes, the WebSocket and the rpcs of one replica use."""

    settings: BrokerSettings
    metrics: BrokerMetrics
    connector: Connector
    elector: Elector
    notifier: TaskReadyNotifier
    event_hub: EventHub
    store: TaskStore
    worker_store: WorkerStore
    keys: ApiKeyStore
    schedules: ScheduleStore
    heartbeat_budget: HeartbeatBudget
    open_streams: OpenStreams
    authenticator: Authenticator
    task_waits: TaskWaits
    grpc: GrpcServer | None  # None: this replica serves no gRPC
    overview: OverviewQueries  # the dashboard's overview, shared by every viewer

    def begin_stop(self) -> None:
        """On SIGTERM, before anything closes: waiting claims return at once instead of holding
        the terminating replica for their whole wait, and `?wait=` requests answer what they
        have."""
        self.notifier.close()
        self.task_waits.close()


def connector_config(settings: BrokerSettings) -> ConnectorConfig:
    if not settings.database_url:
        raise ValueError("the broker needs settings.database_url (the CLI starts the embedded one)")
    return ConnectorConfig(
        conninfo=settings.database_url,
        min_connections=settings.pool_min_connections,
        max_connections=settings.pool_max_connections,
        pool_timeout_seconds=settings.pool_timeout_seconds,
        statement_timeout_ms=settings.statement_timeout_ms,
    )


def auth_config(settings: BrokerSettings) -> AuthConfig:
    admin_key = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
    return AuthConfig(
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
    connector: Connector, settings: BrokerSettings, events: EventPublisher, ready: ReadyAnnouncer
) -> list[Schedule]:
    """The leader's sweeps."""
    rescuer = Rescuer(
        connector,
        RescuerConfig(
            deadline_grace_seconds=settings.deadline_grace_seconds,
            abort_grace_seconds=settings.abort_grace_seconds,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_cap_seconds=settings.backoff_cap_seconds,
        ),
        events,
    )
    reaper = Reaper(connector, ReaperConfig(silent_seconds=settings.worker_silent_seconds))
    cleaner = Cleaner(connector, CleanerConfig(retention_seconds=settings.retention_seconds))
    scheduler = Scheduler(
        connector,
        SchedulerConfig(fire_retention_seconds=settings.retention_seconds),
        events,
        ready,
    )
    return [
        Schedule(rescuer, settings.rescue_interval_seconds, leader_only=True),
        Schedule(reaper, settings.rescue_interval_seconds, leader_only=True),
        Schedule(cleaner, settings.cleanup_interval_seconds, leader_only=True),
        Schedule(scheduler, settings.schedule_check_interval_seconds, leader_only=True),
    ]


def _build(
    settings: BrokerSettings,
    metrics: BrokerMetrics,
    connector: Connector,
    config: ConnectorConfig,
    grpc: GrpcServer | None,
) -> tuple[Broker, list[Schedule]]:
    """The replica's objects, and its background services."""
    events = EventPublisher(connector, on_change=metrics.count_transitions)
    elector, election_interval = choose_elector(settings, config)
    notifier = TaskReadyNotifier()
    ready = ReadyAnnouncer(config, notifier)
    hub = EventHub(connector)
    store = TaskStore(connector, events, ready, settings.max_payload_bytes)
    task_waits = TaskWaits(store, hub, settings.max_task_waiters)
    listener = Listener(
        config,
        {
            TASK_READY_CHANNEL: notifier.on_task_ready,
            WORKER_STOP_CHANNEL: notifier.on_worker_stop,
            EVENTS_CHANNEL: hub.on_notification,
        },
        # Anything may have happened while not listening.
        on_connect=[notifier.wake_all, task_waits.recheck_all],
        own_sender=lambda: ready.backend_pid,
    )
    hub.listening = listener.listening
    keys = ApiKeyStore(connector)
    authenticator = Authenticator(keys, ClusterRateLimiter(connector), auth_config(settings))
    broker = Broker(
        settings=settings,
        metrics=metrics,
        connector=connector,
        elector=elector,
        notifier=notifier,
        event_hub=hub,
        store=store,
        worker_store=WorkerStore(connector, lease_config(settings), events),
        keys=keys,
        schedules=ScheduleStore(connector, max_payload_bytes=settings.max_payload_bytes),
        heartbeat_budget=HeartbeatBudget(
            settings.lease_ttl_seconds,
            settings.heartbeat_interval_seconds,
            burst=settings.heartbeat_budget_per_ttl,
        ),
        open_streams=OpenStreams(settings.streams_per_key_max),
        authenticator=authenticator,
        task_waits=task_waits,
        overview=OverviewQueries(connector),
        grpc=grpc,
    )
    services = [
        Schedule(elector, election_interval),
        Schedule(listener, 0),
        Schedule(events, 0),
        Schedule(ready, 0),
        Schedule(hub, REGISTRATION_CHECK_SECONDS),
        Schedule(ReadyCheck(connector, notifier), settings.claim_poll_interval_seconds),
        *maintenance_services(connector, settings, events, ready),
        Schedule(
            Job("key-usage", authenticator.flush_last_used, authenticator.flush_last_used),
            KEY_USAGE_FLUSH_SECONDS,
        ),
        Schedule(
            Job("metrics-snapshot", lambda: metrics.refresh_queue_state(connector, elector)),
            settings.metrics_refresh_seconds,
        ),
    ]
    return broker, services


@contextlib.asynccontextmanager
async def open_broker(
    settings: BrokerSettings, metrics: BrokerMetrics, *, serve_grpc: bool
) -> AsyncIterator[Broker]:
    """The replica, running for the block. `serve_grpc`: also serve gRPC on
    settings.grpc_port (the CLI does; in-process tests do not). A port it cannot bind is an
    error: the broker does not run half its API."""
    config = connector_config(settings)
    grpc: GrpcServer | None = None
    if serve_grpc:
        from tq_broker.rpc.server import GrpcServer  # grpc costs ~0.5 s of imports: only if used

        grpc = GrpcServer(settings)
    connector = Connector(config)
    await connector.open()
    stop = asyncio.Event()
    runner: asyncio.Task[None] | None = None
    try:
        if settings.migrate_on_start:
            applied = await migrate(connector)
            if applied:
                log.info("applied migrations %s", applied)
        broker, services = _build(settings, metrics, connector, config, grpc)
        runner = asyncio.create_task(
            ServiceRunner(services, lambda: broker.elector.is_leader).run(stop), name="services"
        )
        if grpc is not None:
            try:
                await grpc.start(broker)
            except RuntimeError as exc:
                log.error("gRPC API not started: %s", exc)
                raise
        yield broker
    finally:
        if grpc is not None:  # before what the rpcs use closes
            await grpc.stop()
        stop.set()
        if runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner, SHUTDOWN_SECONDS)
        await connector.close()
