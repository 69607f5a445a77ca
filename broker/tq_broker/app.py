"""The application factory: `create_app(settings)` wires the routes and the middleware.

Nothing runs at import time. The lifespan opens the replica's `Broker` (tq_broker.broker: the
pool, the stores, the services) and keeps it, and only it, in `app.state.broker`; the routes
reach it through `api.deps.broker_of`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from tq_broker.api import keys, schedules, stream, system, tasks, workers
from tq_broker.api.errors import install_error_handlers
from tq_broker.api.guard import RequestGuard
from tq_broker.api.limits import BodySizeLimit
from tq_broker.api.security import RateLimitHeaders
from tq_broker.api.submit_fast_path import SUBMIT_PATH, SubmitFastPath
from tq_broker.broker import open_broker
from tq_broker.metrics import BrokerMetrics, HttpMetrics
from tq_broker.settings import BrokerSettings
from tq_broker.ui import install as install_dashboard

RELEASE_BODY_MAX_BYTES = 256 * 1024
SMALL_BODY_MAX_BYTES = 64 * 1024


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


def create_app(
    settings: BrokerSettings, metrics: BrokerMetrics | None = None, *, serve_grpc: bool = False
) -> FastAPI:
    """The HTTP API of one replica; its lifespan opens the `Broker` (`open_broker`).

    `metrics`: the registry the CLI also serves on the metrics port (a fresh one otherwise);
    `serve_grpc`: the replica also serves gRPC on settings.grpc_port."""
    if metrics is None:
        metrics = BrokerMetrics(settings.metrics_task_types_max)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_broker(settings, metrics, serve_grpc=serve_grpc) as broker:
            app.state.broker = broker
            try:
                yield
            finally:
                del app.state.broker

    app = FastAPI(
        title="taskqueue broker",
        version="0.1.0",
        description="REST API of taskqueue, as in shared/spec/API.md.",
        lifespan=lifespan,
        docs_url=None,  # served from the package by tq_broker.ui, not from a CDN
        redoc_url=None,
    )
    app.openapi = lambda: _openapi_without_422(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    routers = (tasks.router, workers.router, keys.router, schedules.router, system.router)
    for router in (*routers, stream.router):
        app.include_router(router)
    install_dashboard(app)
    # Middleware runs outermost-last-added: size limits, the guard, metrics, headers, then
    # the submit's fast path in front of the routes.
    app.add_middleware(SubmitFastPath, route=_route(tasks.router.routes, "POST", SUBMIT_PATH))
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


def _route(routes: Sequence[BaseRoute], method: str, path: str) -> APIRoute:
    return next(
        r
        for r in routes
        if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())
    )
