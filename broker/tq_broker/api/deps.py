"""Dependencies of the routes, as `Annotated` aliases so that signatures read plainly.

Every one reads the replica's `Broker`, the only thing in `app.state` (`broker_of`).

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread,
a thread hop per dependency per request that cost more than the rest of a submit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from tq_broker.broker import Broker
from tq_broker.leader import Elector
from tq_broker.metrics import BrokerMetrics
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.ratelimit import HeartbeatBudget
from tq_broker.settings import BrokerSettings
from tq_broker.task_store import TaskStore
from tq_broker.task_waits import TaskWaits
from tq_broker.worker_store import WorkerStore


def broker_of(app: Starlette) -> Broker:
    """The replica the app's lifespan opened (requests arrive only while it is open)."""
    broker: Broker = app.state.broker
    return broker


async def _store(request: Request) -> TaskStore:
    return broker_of(request.app).store


async def _settings(request: Request) -> BrokerSettings:
    return broker_of(request.app).settings


async def _elector(request: Request) -> Elector:
    return broker_of(request.app).elector


async def _worker_store(request: Request) -> WorkerStore:
    return broker_of(request.app).worker_store


async def _notifier(request: Request) -> TaskReadyNotifier:
    return broker_of(request.app).notifier


async def _budget(request: Request) -> HeartbeatBudget:
    return broker_of(request.app).heartbeat_budget


async def _task_waits(request: Request) -> TaskWaits:
    return broker_of(request.app).task_waits


async def _metrics(request: Request) -> BrokerMetrics:
    return broker_of(request.app).metrics


StoreDep = Annotated[TaskStore, Depends(_store)]
SettingsDep = Annotated[BrokerSettings, Depends(_settings)]
ElectorDep = Annotated[Elector, Depends(_elector)]
WorkerStoreDep = Annotated[WorkerStore, Depends(_worker_store)]
NotifierDep = Annotated[TaskReadyNotifier, Depends(_notifier)]
MetricsDep = Annotated[BrokerMetrics, Depends(_metrics)]
BudgetDep = Annotated[HeartbeatBudget, Depends(_budget)]
TaskWaitsDep = Annotated[TaskWaits, Depends(_task_waits)]
