"""The only module that touches psycopg: the connection pool, named statements, error translation.

The one thing not to break: every wait is bounded. A request never waits longer than the pool
timeout for a connection, nor longer than the statement timeout for PostgreSQL, so a dead
database turns into a prompt 503 instead of a hang.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tq_broker.errors import Conflict, StoreUnavailable
from tq_broker.queries import queries

log = logging.getLogger(__name__)

Row = dict[str, Any]
Params = Mapping[str, Any]


class UniqueViolation(Conflict):
    """A unique constraint refused a row."""


@dataclass(frozen=True)
class ConnectorConfig:
    conninfo: str
    min_connections: int = 2
    max_connections: int = 10
    pool_timeout_seconds: float = 5.0
    connect_timeout_seconds: int = 5
    statement_timeout_ms: int = 10_000
    # Defence against a session left open in a transaction pinning the xmin horizon.
    idle_in_transaction_timeout_ms: int = 30_000


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise UniqueViolation(str(exc.diag.constraint_name or "unique violation")) from exc
    except psycopg.errors.QueryCanceled as exc:
        raise StoreUnavailable("database statement timed out") from exc
    except PoolTimeout as exc:
        raise StoreUnavailable("no database connection available") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable("database unavailable") from exc


class Session:
    """Named statements over one connection (autocommit, or inside a transaction)."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def fetch_one(self, name: str, params: Params | None = None) -> Row | None:
        async with translated_errors():
            cur = await self._conn.execute(queries()[name], params)
            return await cur.fetchone()

    async def fetch_all(self, name: str, params: Params | None = None) -> list[Row]:
        async with translated_errors():
            cur = await self._conn.execute(queries()[name], params)
            return await cur.fetchall()

    async def execute(self, name: str, params: Params | None = None) -> int:
        async with translated_errors():
            cur = await self._conn.execute(queries()[name], params)
            return cur.rowcount

    async def execute_script(self, sql: str) -> None:
        """Run a migration file: several statements, no parameters."""
        async with translated_errors():
            await self._conn.execute(sql.encode("utf-8"))


class Connector:
    """A pool of autocommit connections that runs named statements."""

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        options = (
            f"-c statement_timeout={config.statement_timeout_ms}"
            f" -c idle_in_transaction_session_timeout={config.idle_in_transaction_timeout_ms}"
            " -c timezone=UTC"
        )
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            config.conninfo,
            min_size=config.min_connections,
            max_size=config.max_connections,
            timeout=config.pool_timeout_seconds,
            open=False,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": config.connect_timeout_seconds,
                "options": options,
                "application_name": "tq-broker",
            },
            reconnect_timeout=0,  # keep trying to refill forever; PostgreSQL may come back
        )

    async def open(self) -> None:
        async with translated_errors():
            await self._pool.open(wait=True, timeout=self.config.pool_timeout_seconds * 6)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        async with translated_errors(), self._pool.connection() as conn:
            yield Session(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with translated_errors(), self._pool.connection() as conn, conn.transaction():
            yield Session(conn)

    async def fetch_one(self, name: str, params: Params | None = None) -> Row | None:
        async with self.session() as s:
            return await s.fetch_one(name, params)

    async def fetch_all(self, name: str, params: Params | None = None) -> list[Row]:
        async with self.session() as s:
            return await s.fetch_all(name, params)

    async def execute(self, name: str, params: Params | None = None) -> int:
        async with self.session() as s:
            return await s.execute(name, params)


class DedicatedSession(Session):
    """A connection outside the pool, for session state: an advisory lock, or LISTEN."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        super().__init__(conn)
        self._dedicated = conn

    @property
    def closed(self) -> bool:
        return self._dedicated.closed or self._dedicated.broken

    async def listen(self, channel: str) -> None:
        async with translated_errors():
            await self._dedicated.execute(f"LISTEN {channel}".encode())

    @property
    def backend_pid(self) -> int:
        """The server process of this session: the sender of its NOTIFYs, as listeners see it."""
        return self._dedicated.info.backend_pid

    async def notifications(
        self, timeout_seconds: float, stop_after: int = 1000
    ) -> AsyncIterator[tuple[str, str, int]]:
        """(channel, payload, sender's backend pid) of each notification as soon as it arrives,
        until the timeout (or stop_after of them). Yielded one by one, not gathered: a waiter
        woken by one must not wait for the rest of the timeout."""
        async with translated_errors():
            gen = self._dedicated.notifies(timeout=timeout_seconds, stop_after=stop_after)
            async for notification in gen:
                yield notification.channel, notification.payload, notification.pid

    async def close(self) -> None:
        await self._dedicated.close()


async def connect_dedicated(
    config: ConnectorConfig, extra_options: str = "", application_name: str = "tq-broker"
) -> DedicatedSession:
    """Open one autocommit connection with its own settings (never returned to a pool)."""
    options = f"-c statement_timeout={config.statement_timeout_ms} -c timezone=UTC {extra_options}"
    async with translated_errors():
        conn = await psycopg.AsyncConnection.connect(
            config.conninfo,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=config.connect_timeout_seconds,
            options=options.strip(),
            application_name=application_name,
        )
    return DedicatedSession(conn)
