"""`tq-broker`: serve the API (default) or apply migrations.

With no database URL it starts the embedded PostgreSQL in the data directory and stops it on
exit; with one it uses that server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE

from tq_broker import redaction
from tq_broker.api.deps import broker_of
from tq_broker.app import create_app
from tq_broker.broker import Broker, connector_config
from tq_broker.connector import Connector
from tq_broker.embedded import EmbeddedPostgres, EmbeddedPostgresError
from tq_broker.errors import StoreUnavailable
from tq_broker.http_protocol import protocol_with_deadlines
from tq_broker.keys import Permission
from tq_broker.metrics import BrokerMetrics
from tq_broker.migrations import migrate
from tq_broker.settings import BrokerSettings
from tq_client.logs import add_logging_arguments, configure_from_arguments, uvicorn_log_config

log = logging.getLogger("tq_broker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tq-broker", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    parser.add_argument("--host", help="listen address (TQ_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (TQ_PORT, default 8080)")
    parser.add_argument("--metrics-port", type=int, help="metrics port (TQ_METRICS_PORT, 9091)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (TQ_GRPC_PORT, 9090; 0: off)")
    parser.add_argument("--database-url", help="PostgreSQL URL (TQ_DATABASE_URL); none: embedded")
    parser.add_argument("--data-dir", type=Path, help="embedded PostgreSQL data (TQ_DATA_DIR)")
    parser.add_argument(
        "--demo-worker",
        action="store_true",
        default=None,
        help="also run a worker with the demo handlers (TQ_DEMO_WORKER)",
    )
    add_logging_arguments(parser)  # --log-format text|json (TQ_LOG_FORMAT), --log-level
    return parser


def _settings(args: argparse.Namespace) -> BrokerSettings:
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "metrics_port": args.metrics_port,
            "grpc_port": args.grpc_port,
            "database_url": args.database_url,
            "data_dir": args.data_dir,
            "demo_worker": args.demo_worker,
        }.items()
        if value is not None
    }
    return BrokerSettings(**overrides)


@contextlib.contextmanager
def database(settings: BrokerSettings) -> Iterator[BrokerSettings]:
    """Settings with a database URL: the given one, or an embedded server's for the duration."""
    if settings.database_url:
        yield settings
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    embedded.start()
    log.info("embedded PostgreSQL running in %s", settings.data_dir)
    try:
        yield settings.model_copy(
            update={"database_url": embedded.url(), "embedded_database": True}
        )
    finally:
        embedded.stop()


async def _migrate(settings: BrokerSettings) -> list[int]:
    connector = Connector(connector_config(settings))
    await connector.open()
    try:
        return await migrate(connector)
    finally:
        await connector.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        configure_from_arguments(args)
    except ValueError as exc:
        print(f"tq-broker: {exc}", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        print(f"tq-broker: invalid settings: {problems}", file=sys.stderr)
        return 2
    try:
        settings.auth_enabled()  # refuse auth=off off loopback before starting anything
    except ValueError as exc:
        print(f"tq-broker: {exc}", file=sys.stderr)
        return 2
    try:
        with database(settings) as ready:
            if args.command == "migrate":
                applied = asyncio.run(_migrate(ready))
                print(f"applied migrations: {applied or 'none (up to date)'}")
                return 0
            return serve(ready)
    except (EmbeddedPostgresError, StoreUnavailable) as exc:
        print(f"tq-broker: {exc}", file=sys.stderr)
        return 1


class BrokerServer(uvicorn.Server):
    """uvicorn waits for open requests before stopping; long-polling claims must not hold a
    terminating replica for their whole wait, so they are woken to return at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        # Runs before the server stops (the demo worker drains while its broker still serves).
        self.before_exit: Callable[[], Awaitable[None]] | None = None

    def _broker(self) -> Broker | None:
        """The replica, while the app's lifespan has it open."""
        return getattr(self.app.state, "broker", None)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        broker = self._broker()
        if broker is not None and broker.grpc is not None:  # its streams end with HTTP's
            await broker.grpc.stop()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        broker = self._broker()
        if broker is not None:
            broker.begin_stop()
        before, self.before_exit = self.before_exit, None
        if before is None:
            super().handle_exit(sig, frame)
            return

        async def exit_after() -> None:
            try:
                await before()
            finally:
                super(BrokerServer, self).handle_exit(sig, frame)

        self._exit_task = asyncio.get_event_loop().create_task(exit_after())


def serve(settings: BrokerSettings) -> int:
    """Serve until stopped; uvicorn's own lines go through our handler, in our format, at the
    root logger's level (`configure_logging` ran first)."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    metrics = BrokerMetrics(settings.metrics_task_types_max)
    app = create_app(settings, metrics, serve_grpc=bool(settings.grpc_port))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol_with_deadlines(
            settings.header_timeout_seconds, settings.body_timeout_seconds
        ),
        limit_concurrency=settings.max_connections,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        access_log=settings.access_log,
        log_config=uvicorn_log_config(level),
        log_level=level,
        timeout_graceful_shutdown=10,
        # Longer than any client's idle gap (workers heartbeat every 5 s): a keep-alive
        # connection closed by the server just as a client reuses it is a spurious ReadError.
        timeout_keep_alive=75,
    )
    redaction.install()  # after uvicorn.Config, which sets up uvicorn's handlers
    server = BrokerServer(config, app)
    scheme = "https" if settings.tls_files() else "http"
    log.info("taskqueue broker on %s://%s:%s", scheme, settings.host, settings.port)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.host, metrics.registry)
        log.info("metrics on http://%s:%s/metrics", settings.host, settings.metrics_port)
    if not settings.auth_enabled():
        log.warning(
            "AUTHENTICATION IS OFF: any local process may submit, read and cancel tasks. "
            "Allowed only on a loopback address; set TQ_AUTH=on or TQ_ADMIN_API_KEY to require "
            "API keys."
        )
    try:
        if not settings.demo_worker:
            server.run()
            return 0 if server.started else 1
        return asyncio.run(_serve_with_demo_worker(server, settings))
    except SystemExit as exc:
        # uvicorn exits 3 when the lifespan fails to open the broker (database, gRPC port):
        # like every other failure to start, that is exit status 1; the log says why.
        if exc.code != STARTUP_FAILURE:
            raise
        return 1


async def _demo_worker_key(server: BrokerServer, settings: BrokerSettings) -> str:
    """The admin key if one is configured, else a fresh key with process_tasks only."""
    if settings.admin_api_key is not None:
        return settings.admin_api_key.get_secret_value()
    secret, _ = await broker_of(server.app).keys.key_insert(
        "demo-worker", [Permission.PROCESS_TASKS], None, None
    )
    return secret


async def _serve_with_demo_worker(server: BrokerServer, settings: BrokerSettings) -> int:
    """The broker plus one worker process running the demo handlers (noop, echo, sleep, fail)."""
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn offers a flag
        await asyncio.sleep(0.05)
    if not server.started:
        await serving
        return 1
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    env = dict(os.environ)
    if settings.auth_enabled():
        env["TQ_API_KEY"] = await _demo_worker_key(server, settings)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tq_worker",
        "--app",
        "tq_worker.demo:worker",
        "--broker-url",
        f"http://{host}:{settings.port}",
        "--concurrency",
        "4",
        env=env,
    )
    log.info("demo worker started (pid %s)", worker.pid)

    async def stop_worker() -> None:
        if worker.returncode is None:
            worker.terminate()  # it drains: finishes or releases what it holds, deregisters
            try:
                await asyncio.wait_for(worker.wait(), 40)
            except TimeoutError:
                worker.kill()

    server.before_exit = stop_worker
    try:
        await serving
    finally:
        await stop_worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
