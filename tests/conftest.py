"""Shared fixtures: one embedded PostgreSQL per test run, a fresh database per test.

The server is the broker's own `EmbeddedPostgres` (same code path as production). Each test
gets a database cloned from a migrated template, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.embedded import EmbeddedPostgres
from tq_broker.migrations import migrate

TEMPLATE_DB = "tq_template"
# The TestClient's base URL: with auth off the broker refuses non-loopback Hosts ("testserver").
LOOPBACK = "http://127.0.0.1"
_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    # Under /tmp: as root the server runs as an unprivileged user who must reach the directory.
    base = Path(tempfile.mkdtemp(prefix="tq-test-pg-"))
    os.chmod(base, 0o755)
    server = EmbeddedPostgres(base, durable=False).start()
    try:
        _create_template(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _create_template(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}".encode())

    async def run() -> None:
        connector = Connector(ConnectorConfig(server.conninfo(TEMPLATE_DB), min_connections=1))
        await connector.open()
        try:
            await migrate(connector)
        finally:
            await connector.close()

    asyncio.run(run())


def create_database(server: EmbeddedPostgres, template: str = TEMPLATE_DB) -> str:
    name = f"tq_test_{os.getpid()}_{next(_db_numbers)}"
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}".encode())
    return name


def drop_database(server: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A durable PostgreSQL of the test's own, for tests that kill and restart it."""
    base = Path(tempfile.mkdtemp(prefix="tq-own-pg-"))
    os.chmod(base, 0o755)  # reachable by the unprivileged server user when we are root
    server = EmbeddedPostgres(base).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(pg: EmbeddedPostgres) -> Iterator[str]:
    """The name of a fresh, migrated, empty database."""
    name = create_database(pg)
    try:
        yield name
    finally:
        drop_database(pg, name)


@pytest.fixture
def database_url(pg: EmbeddedPostgres, database: str) -> str:
    return pg.url(database)


@pytest.fixture
def db(pg: EmbeddedPostgres, database: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    """A direct connection to the test's database, for checking what was (not) written."""
    with psycopg.connect(pg.conninfo(database), autocommit=True, row_factory=dict_row) as conn:
        yield conn
