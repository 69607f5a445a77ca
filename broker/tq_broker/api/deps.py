"""Dependencies of the routes, as `Annotated` aliases so that signatures read plainly.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread,
a thread hop per dependency per request that cost more than the rest of a submit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tq_broker.leader import Elector
from tq_broker.metrics import BrokerMetrics
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.ratelimit import HeartbeatBudget
from tq_broker.settings import BrokerSettings
from tq_broker.task_store import TaskStore
from tq_broker.worker_store import WorkerStore


async def _store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.store
    return store


async def _settings(request: Request) -> BrokerSettings:
    settings: BrokerSettings = request.app.state.settings
    return settings


async def _elector(request: Request) -> Elector:
    elector: Elector = request.app.state.elector
    return elector


async def _worker_store(request: Request) -> WorkerStore:
    store: WorkerStore = request.app.state.worker_store
    return store


async def _notifier(request: Request) -> TaskReadyNotifier:
    notifier: TaskReadyNotifier = request.app.state.notifier
    return notifier


async def _budget(request: Request) -> HeartbeatBudget:
    budget: HeartbeatBudget = request.app.state.heartbeat_budget
    return budget


async def _metrics(request: Request) -> BrokerMetrics:
    metrics: BrokerMetrics = request.app.state.metrics
    return metrics


StoreDep = Annotated[TaskStore, Depends(_store)]
SettingsDep = Annotated[BrokerSettings, Depends(_settings)]
ElectorDep = Annotated[Elector, Depends(_elector)]
WorkerStoreDep = Annotated[WorkerStore, Depends(_worker_store)]
NotifierDep = Annotated[TaskReadyNotifier, Depends(_notifier)]
MetricsDep = Annotated[BrokerMetrics, Depends(_metrics)]
BudgetDep = Annotated[HeartbeatBudget, Depends(_budget)]
