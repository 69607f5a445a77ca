"""The migrations and sql/schema.sql build identical databases; migrating twice is a no-op."""

from __future__ import annotations

import asyncio
import subprocess
from importlib import resources

import psycopg
import pytest

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.embedded import EmbeddedPostgres, find_server_bindir
from tq_broker.migrations import available_migrations, migrate

from ..conftest import create_database, drop_database


def schema_dump(pg: EmbeddedPostgres, dbname: str) -> str:
    out = subprocess.run(
        [str(find_server_bindir() / "pg_dump"), "--schema-only", "--no-owner", pg.conninfo(dbname)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Comments and the random \\restrict keys of newer pg_dump differ between any two dumps.
    skip = ("--", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in out.splitlines() if not line.startswith(skip))


async def run_migrations(conninfo: str) -> list[int]:
    connector = Connector(ConnectorConfig(conninfo, min_connections=1))
    await connector.open()
    try:
        return await migrate(connector)
    finally:
        await connector.close()


@pytest.fixture
def empty_database(pg: EmbeddedPostgres) -> str:
    return create_database(pg, template="template0")


def test_migrations_build_the_same_schema_as_schema_sql(
    pg: EmbeddedPostgres, empty_database: str
) -> None:
    from_file = create_database(pg, template="template0")
    try:
        asyncio.run(run_migrations(pg.conninfo(empty_database)))
        schema = resources.files("tq_broker").joinpath("sql/schema.sql").read_text()
        with psycopg.connect(pg.conninfo(from_file), autocommit=True) as conn:
            conn.execute(schema.encode())
        assert schema_dump(pg, empty_database) == schema_dump(pg, from_file)
    finally:
        drop_database(pg, from_file)
        drop_database(pg, empty_database)


def test_migrating_twice_applies_nothing_the_second_time(
    pg: EmbeddedPostgres, empty_database: str
) -> None:
    try:
        first = asyncio.run(run_migrations(pg.conninfo(empty_database)))
        second = asyncio.run(run_migrations(pg.conninfo(empty_database)))
        assert first == [m.version for m in available_migrations()]
        assert second == []
    finally:
        drop_database(pg, empty_database)


def test_replicas_migrating_at_once_apply_each_migration_exactly_once(
    pg: EmbeddedPostgres, empty_database: str
) -> None:
    async def race() -> list[list[int]]:
        return list(
            await asyncio.gather(*(run_migrations(pg.conninfo(empty_database)) for _ in range(4)))
        )

    try:
        results = asyncio.run(race())
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in available_migrations()]
    finally:
        drop_database(pg, empty_database)
