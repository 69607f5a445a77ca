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

from tq_broker.api import system, tasks
from tq_broker.api.errors import install_error_handlers
from tq_broker.api.limits import BodySizeLimit
from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.leader import AdvisoryLockElector
from tq_broker.migrations import migrate
from tq_broker.settings import BrokerSettings
from tq_broker.store import TaskStore

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

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = Connector(config)
        await connector.open()
        stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        try:
            if settings.migrate_on_start:
                applied = await migrate(connector)
                if applied:
                    log.info("applied migrations %s", applied)
            elector = AdvisoryLockElector(config)
            app.state.store = TaskStore(connector, settings.max_payload_bytes)
            app.state.elector = elector
            background.append(asyncio.create_task(elector.run(stop), name="elector"))
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
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    app.include_router(tasks.router)
    app.include_router(system.router)
    app.add_middleware(
        BodySizeLimit,
        default_max=settings.max_body_bytes,
        per_path={"/api/v1/tasks/batch": settings.max_batch_body_bytes},
    )
    return app
