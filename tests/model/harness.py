"""The real side of the model test: the broker app, the leader's sweeps, and a time machine.

- The broker runs in-process (TestClient, lifespan and all) on its own database.
- The test is the leader: it takes the leader's advisory lock before the app starts, so the
  app's own maintenance runner never sweeps on its own timing. The test runs the very same
  services (Rescuer, Reaper, Cleaner) through `run_once()` when a rule says so.
- The broker's one source of randomness that steers the life cycle, the jitter of a retry's
  backoff (`random()` in queries.sql), is pinned: this private database gets a `public.random()`
  that returns a value the test sets per example, found before pg_catalog on its search_path.
  Hypothesis must be able to replay a sequence of steps exactly while it shrinks; with a real
  coin flip deciding whether a task in its jitter window is claimable, it cannot. The model
  still assumes only the window, never the value.
- Time passes without sleeping: `travel(seconds)` moves every stored timestamp of the task and
  worker tables back by that much, in one transaction. To the broker, whose every lease
  decision compares a stored timestamp with the database clock now(), that is exactly as if the
  time had passed. (Rows of other tables — API keys, rate buckets, event listeners — play no
  part in the life cycle and are left alone.)

The one thing not to break: TIMESTAMP_COLUMNS must name every timestamp column of tq_tasks and
tq_workers in schema.sql; a column left out would not age, and the model would disagree with
the broker for no fault of the broker's. `check_timestamp_columns` guards it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.rows import dict_row

from tests.model.clock import Limits
from tq_broker.app import create_app
from tq_broker.connector import Connector, ConnectorConfig
from tq_broker.events import EventPublisher
from tq_broker.maintenance.cleaner import Cleaner, CleanerConfig, CleanResult
from tq_broker.maintenance.reaper import Reaper, ReaperConfig, ReapResult
from tq_broker.maintenance.rescuer import Rescuer, RescuerConfig, RescueResult
from tq_broker.queries import queries
from tq_broker.settings import BrokerSettings

from ..conftest import LOOPBACK

Row = dict[str, Any]

TIMESTAMP_COLUMNS: dict[str, tuple[str, ...]] = {
    "tq_tasks": (
        "run_at",
        "lease_expires_at",
        "claimed_at",
        "finished_at",
        "created_at",
        "updated_at",
        "abort_requested_at",
        "progress_updated_at",
    ),
    "tq_workers": ("registered_at", "last_heartbeat"),
}
# Nothing the model does waits on these; they only need to stay out of the way.
NEVER_SECONDS = 10 * 365 * 24 * 3600.0


def broker_settings(database_url: str, limits: Limits) -> BrokerSettings:
    return BrokerSettings(
        database_url=database_url,
        auth="off",
        leader_election="advisory",
        lease_ttl_seconds=limits.lease_ttl_seconds,
        backoff_base_seconds=limits.backoff_base_seconds,
        backoff_cap_seconds=limits.backoff_cap_seconds,
        deadline_grace_seconds=limits.deadline_grace_seconds,
        worker_silent_seconds=limits.worker_silent_seconds,
        retention_seconds=limits.retention_seconds,
        # Belt and braces: were this replica ever the leader, it would sweep once, then never.
        rescue_interval_seconds=NEVER_SECONDS,
        cleanup_interval_seconds=NEVER_SECONDS,
        claim_wait_max_seconds=0,
        # The budget runs on the real clock, the model on its own: the model beats far more
        # often than any worker would. The budget has its own tests (test_auth.py).
        heartbeat_budget_per_ttl=1_000_000,
    )


class Sweeps:
    """The leader's maintenance services, run on demand on a private event loop."""

    def __init__(self, runner: asyncio.Runner, connector: Connector, limits: Limits) -> None:
        self._runner = runner
        self._rescuer = Rescuer(
            connector,
            RescuerConfig(
                deadline_grace_seconds=limits.deadline_grace_seconds,
                backoff_base_seconds=limits.backoff_base_seconds,
                backoff_cap_seconds=limits.backoff_cap_seconds,
            ),
            EventPublisher(connector),
        )
        self._reaper = Reaper(connector, ReaperConfig(silent_seconds=limits.worker_silent_seconds))
        self._cleaner = Cleaner(
            connector, CleanerConfig(retention_seconds=limits.retention_seconds)
        )

    def rescue(self) -> RescueResult:
        return self._runner.run(self._rescuer.run_once())

    def reap(self) -> ReapResult:
        return self._runner.run(self._reaper.run_once())

    def clean(self) -> CleanResult:
        return self._runner.run(self._cleaner.run_once())


@dataclass
class Broker:
    """Everything a rule touches: the API, a direct connection, and the sweeps."""

    api: TestClient
    db: psycopg.Connection[Row]
    sweeps: Sweeps

    def reset(self) -> None:
        """An empty queue for the next example (cheaper than a database per example)."""
        with self.db.transaction():
            self.db.execute("DELETE FROM tq_tasks")
            self.db.execute("DELETE FROM tq_workers")

    def travel(self, seconds: int) -> None:
        """Let `seconds` pass: every stored timestamp moves that far into the past."""
        shift = timedelta(seconds=seconds)
        with self.db.transaction():
            for table, columns in TIMESTAMP_COLUMNS.items():
                assignments = sql.SQL(", ").join(
                    sql.SQL("{col} = {col} - %(shift)s").format(col=sql.Identifier(c))
                    for c in columns
                )
                statement = sql.SQL("UPDATE {table} SET {assignments}").format(
                    table=sql.Identifier(table), assignments=assignments
                )
                self.db.execute(statement, {"shift": shift})

    def set_jitter(self, value: float) -> None:
        """What random() returns from now on (see pin_random)."""
        self.db.execute("UPDATE tq_model_jitter SET value = %s", (value,))

    def now(self) -> datetime:
        row = self.db.execute("SELECT now() AS now").fetchone()
        assert row is not None and isinstance(row["now"], datetime)
        return row["now"]

    def task_rows(self) -> dict[UUID, Row]:
        rows = self.db.execute("SELECT * FROM tq_tasks").fetchall()
        return {row["task_id"]: row for row in rows}

    def task_row(self, task_id: UUID) -> Row | None:
        return self.db.execute("SELECT * FROM tq_tasks WHERE task_id = %s", (task_id,)).fetchone()

    def worker_rows(self) -> dict[str, Row]:
        rows = self.db.execute("SELECT * FROM tq_workers").fetchall()
        return {row["worker_id"]: row for row in rows}


def pin_random(db: psycopg.Connection[Row], database: str) -> None:
    """Make random() return the value in tq_model_jitter, for sessions opened from now on."""
    with db.transaction():
        db.execute("CREATE TABLE tq_model_jitter (value double precision NOT NULL)")
        db.execute("INSERT INTO tq_model_jitter VALUES (0.5)")
        db.execute(
            "CREATE FUNCTION public.random() RETURNS double precision LANGUAGE sql STABLE "
            "AS 'SELECT value FROM public.tq_model_jitter'"
        )
        db.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = public, pg_catalog").format(
                sql.Identifier(database)
            )
        )


def check_random_is_pinned(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT random() = 0.5 AND random() = 0.5").fetchone()
        assert row == (True,), "random() is not pinned in new sessions"


def check_timestamp_columns(db: psycopg.Connection[Row]) -> None:
    rows = db.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_name = ANY(%s) AND data_type LIKE 'timestamp%%'",
        (list(TIMESTAMP_COLUMNS),),
    ).fetchall()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    expected = {table: set(columns) for table, columns in TIMESTAMP_COLUMNS.items()}
    assert found == expected, "TIMESTAMP_COLUMNS no longer matches schema.sql"


@contextmanager
def running_broker(
    conninfo: str, database: str, database_url: str, limits: Limits
) -> Iterator[Broker]:
    """The app on a private database, with the test holding leadership, random() pinned, and a
    direct connection."""
    with ExitStack() as stack:
        leader = stack.enter_context(
            psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)
        )
        lock = leader.execute(queries()["leader_try_lock"]).fetchone()
        assert lock is not None and lock["acquired"], "someone else holds the leader lock"
        db = stack.enter_context(psycopg.connect(conninfo, autocommit=True, row_factory=dict_row))
        check_timestamp_columns(db)
        pin_random(db, database)
        check_random_is_pinned(conninfo)
        runner = stack.enter_context(asyncio.Runner())
        connector = Connector(ConnectorConfig(database_url, min_connections=1))
        runner.run(connector.open())
        stack.callback(lambda: runner.run(connector.close()))
        app = create_app(broker_settings(database_url, limits))
        api = stack.enter_context(TestClient(app, base_url=LOOPBACK, raise_server_exceptions=True))
        yield Broker(api, db, Sweeps(runner, connector, limits))
