"""The chart's init script for its bundled PostgreSQL, run for real against a PostgreSQL
server: the broker's role can migrate and run the queue, and can do nothing a superuser could
(it used to be the superuser, so `COPY ... TO PROGRAM` ran commands in the pod)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.embedded import SUPERUSER, EmbeddedPostgres
from tq_broker.migrations import migrate

SCRIPT = Path(__file__).resolve().parents[2] / "charts/taskqueue/files/postgres-init.sh"
ROLE, DATABASE, PASSWORD = "tq_bundled_role", "tq_bundled_db", "role-password-0123456789"


@pytest.fixture
def initialised(pg: EmbeddedPostgres) -> str:
    settings = dict(part.split("=", 1) for part in pg.conninfo("postgres").split())
    env = {
        **os.environ,
        "POSTGRES_USER": SUPERUSER,
        "PGHOST": settings["host"],
        "PGPORT": settings["port"],
        "PGPASSFILE": settings["passfile"],
        "TQ_DB_NAME": DATABASE,
        "TQ_DB_USER": ROLE,
        "TQ_DB_PASSWORD": PASSWORD,
    }
    subprocess.run(["sh", str(SCRIPT)], env=env, check=True, capture_output=True, timeout=60)
    where = f"host={settings['host']} port={settings['port']}"
    return f"{where} user={ROLE} password={PASSWORD} dbname={DATABASE}"


def test_the_brokers_role_migrates_its_database_and_is_no_superuser(initialised: str) -> None:
    async def run() -> list[int]:
        connector = Connector(ConnectorConfig(initialised, min_connections=1))
        await connector.open()
        try:
            return await migrate(connector)
        finally:
            await connector.close()

    assert asyncio.run(run()), "no migration applied"
    with psycopg.connect(initialised, autocommit=True) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
        assert row.fetchone() == (False, False)
        conn.execute(
            "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds, "
            "max_retries) VALUES (gen_random_uuid(), 'x', '', 1, 1, 0)"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'id'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE another")
