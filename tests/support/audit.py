"""A test-only witness inside the database: every change of a task's status, lease or result,
written by a trigger in the same transaction as the change itself.

So the checker sees each committed transition (a claim, a completion, a rescue, a cancel) with
the database's clock, including the ones no client observed, and none that rolled back; and
every deletion, so a task that was stored and disappeared cannot go unnoticed.
It is installed into the chaos run's database only, never by the broker's migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

INSTALL = """
CREATE TABLE IF NOT EXISTS tq_chaos_transitions (
    seq         bigserial   PRIMARY KEY,
    task_id     uuid        NOT NULL,
    old_status  text,
    new_status  text        NOT NULL,
    retry_count integer     NOT NULL,
    lease_token uuid,
    result      bytea,
    worker_id   text,
    error       text,
    aborted     boolean     NOT NULL DEFAULT false,  -- an abort was on record (task control)
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION tq_chaos_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN  -- retention is a day in the chaos run: nothing may be deleted
        INSERT INTO tq_chaos_transitions (task_id, old_status, new_status, retry_count)
        VALUES (OLD.task_id, OLD.status, 'deleted', OLD.retry_count);
    ELSIF TG_OP = 'INSERT'
       OR OLD.status IS DISTINCT FROM NEW.status
       OR OLD.lease_token IS DISTINCT FROM NEW.lease_token
       OR OLD.result IS DISTINCT FROM NEW.result THEN
        INSERT INTO tq_chaos_transitions (task_id, old_status, new_status, retry_count,
                                          lease_token, result, worker_id, error, aborted)
        VALUES (NEW.task_id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status,
                NEW.retry_count, NEW.lease_token, NEW.result, NEW.worker_id, NEW.error,
                NEW.abort_requested_at IS NOT NULL);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS tq_chaos_record ON tq_tasks;
CREATE TRIGGER tq_chaos_record AFTER INSERT OR UPDATE OR DELETE ON tq_tasks
    FOR EACH ROW EXECUTE FUNCTION tq_chaos_record();
"""


@dataclass(frozen=True)
class Transition:
    task_id: str
    old_status: str | None
    new_status: str
    retry_count: int
    lease_token: str | None
    result: bytes | None
    at: float  # unix time
    worker_id: str | None = None  # the task's worker as of this transition
    error: str | None = None
    aborted: bool = False  # an abort was on record (POST /api/v1/tasks/{id}/abort)


def install(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(INSTALL.encode())


def read_transitions(conninfo: str) -> dict[str, list[Transition]]:
    """Every task's transitions, in commit order of their rows (seq)."""
    by_task: dict[str, list[Transition]] = {}
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT task_id::text, old_status, new_status, retry_count, lease_token::text, "
            "result, at, worker_id, error, aborted FROM tq_chaos_transitions ORDER BY seq"
        ).fetchall()
    for row in rows:
        at: datetime = row["at"]
        by_task.setdefault(row["task_id"], []).append(
            Transition(
                row["task_id"],
                row["old_status"],
                row["new_status"],
                row["retry_count"],
                row["lease_token"],
                bytes(row["result"]) if row["result"] is not None else None,
                at.timestamp(),
                row["worker_id"],
                row["error"],
                row["aborted"],
            )
        )
    return by_task
