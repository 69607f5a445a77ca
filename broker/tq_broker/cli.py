"""`tq-broker`: serve the API (default) or apply migrations.

With no database URL it starts the embedded PostgreSQL in the data directory and stops it on
exit; with one it uses that server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from tq_broker.app import connector_config, create_app
from tq_broker.connector import Connector
from tq_broker.embedded import EmbeddedPostgres, EmbeddedPostgresError
from tq_broker.errors import StoreUnavailable
from tq_broker.migrations import migrate
from tq_broker.settings import BrokerSettings

log = logging.getLogger("tq_broker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tq-broker", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    parser.add_argument("--host", help="listen address (TQ_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (TQ_PORT, default 8080)")
    parser.add_argument("--database-url", help="PostgreSQL URL (TQ_DATABASE_URL); none: embedded")
    parser.add_argument("--data-dir", type=Path, help="embedded PostgreSQL data (TQ_DATA_DIR)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def _settings(args: argparse.Namespace) -> BrokerSettings:
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "database_url": args.database_url,
            "data_dir": args.data_dir,
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
        yield settings.model_copy(update={"database_url": embedded.url()})
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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings(args)
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


def serve(settings: BrokerSettings) -> int:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=settings.access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    log.info("taskqueue broker on http://%s:%s", settings.host, settings.port)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
