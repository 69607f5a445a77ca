"""The audit trail on a real database records what the checker needs to judge an abort."""

from __future__ import annotations

import psycopg

from ..support.audit import install, read_transitions


def test_the_audit_trail_records_whether_an_abort_was_on_record(database_url: str) -> None:
    install(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for aborted in (False, True):
            conn.execute(
                "INSERT INTO tq_tasks (task_id, task_type, payload, priority, timeout_seconds,"
                " max_retries) VALUES (gen_random_uuid(), %s, '', 100, 300, 0)",
                (f"t{int(aborted)}",),
            )
            conn.execute(
                "UPDATE tq_tasks SET status = 'in_progress', lease_token = gen_random_uuid()"
                " WHERE task_type = %s",
                (f"t{int(aborted)}",),
            )
            if aborted:
                conn.execute(
                    "UPDATE tq_tasks SET abort_requested_at = now(), aborted_by = 'ops'"
                    " WHERE task_type = 't1'"
                )
            conn.execute(
                "UPDATE tq_tasks SET status = 'cancelled', lease_token = NULL WHERE task_type = %s",
                (f"t{int(aborted)}",),
            )
    trails = read_transitions(database_url).values()
    ends = sorted((t[-1].old_status, t[-1].new_status, t[-1].aborted) for t in trails)
    assert ends == [("in_progress", "cancelled", False), ("in_progress", "cancelled", True)]
