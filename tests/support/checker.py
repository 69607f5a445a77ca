"""Reads the whole run — the clients' history, the database, the audit trail of transitions and
the handlers' execution log — and lists every violation of the queue's guarantees.

Guarantees checked (ARCHITECTURE.md, "Task life cycle"):
- no acknowledged submit is lost, and every acknowledgement of one key names the same task;
  no task that was ever stored disappears;
- a submit whose outcome was unknown is either absent or present once; a submit that
  certainly failed is absent; no task exists that no client submitted;
- every task ends in exactly one terminal state, and nothing changes after it;
- every transition follows the life cycle's graph;
- attempts (claims not handed back) ≤ max_retries + 1 and agree with retry_count;
  dead_letter only after all of them; no more handler runs than attempts (a claim handed
  back unstarted is not an attempt, so running it shows here);
- at most one result is ever accepted, and it is the result of a run that finished, started
  under the claim that was current when the result was accepted;
- no claim after a 204 cancel;
- `cancelled` after `in_progress` only with an abort on record, and an aborted task never
  fails, dead-letters or completes after it (it ends cancelled, never retried);
- no attempt is burned by a graceful stop: no lease of a worker process that was stopped with
  SIGTERM (and nothing else at the time) expires;
- every task is terminal within `bound_seconds` of being stored.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .audit import Transition
from .history import Op, Run

TERMINAL = frozenset({"completed", "dead_letter", "cancelled"})
LEGAL = frozenset(
    {
        (None, "pending"),
        ("pending", "in_progress"),
        ("failed", "in_progress"),
        ("in_progress", "completed"),
        ("in_progress", "failed"),
        ("in_progress", "dead_letter"),
        ("in_progress", "pending"),  # handed back unstarted (release, drain)
        ("pending", "cancelled"),
        ("failed", "cancelled"),
        ("in_progress", "cancelled"),  # only with an abort on record (checked below)
    }
)


@dataclass(frozen=True)
class StoredTask:
    task_id: str
    key: str
    status: str
    retry_count: int
    max_retries: int
    result: bytes | None


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def read_tasks(conninfo: str) -> list[StoredTask]:
    """Every task in the database (each chaos submit carries an idempotency key)."""
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT task_id::text, idempotency_key, status, retry_count, max_retries, result "
            "FROM tq_tasks"
        ).fetchall()
    tasks: list[StoredTask] = []
    for row in rows:
        # Stored as "<the API key's scope>:<key>" (idempotency keys are per API key).
        stored_key = row["idempotency_key"]
        key = stored_key.split(":", 1)[-1] if stored_key else f"<no key: {row['task_id']}>"
        result = bytes(row["result"]) if row["result"] is not None else None
        tasks.append(
            StoredTask(
                row["task_id"], key, row["status"], row["retry_count"], row["max_retries"], result
            )
        )
    return tasks


@dataclass(frozen=True)
class Claim:
    """One claim of a task: its `in_progress` transition, and what became of it."""

    at: float
    handed_back: bool  # released or drained unstarted: `in_progress -> pending`


def claims(trail: list[Transition]) -> list[Claim]:
    found = []
    for i, t in enumerate(trail):
        if t.new_status != "in_progress":
            continue
        following = trail[i + 1] if i + 1 < len(trail) else None
        handed_back = following is not None and following.new_status == "pending"
        found.append(Claim(t.at, handed_back))
    return found


def _expired_lease_pid(t: Transition) -> int | None:
    """The pid in the worker id (worker-<host>-<pid>-<random>) of a rescue by lease expiry."""
    if t.old_status != "in_progress" or not (t.error or "").startswith("lease expired"):
        return None
    parts = (t.worker_id or "").rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def check(
    ops: list[Op],
    stored_tasks: list[StoredTask],
    transitions: dict[str, list[Transition]],
    runs: list[Run],
    bound_seconds: float,
    graceful_stops: Mapping[int, float] | None = None,
) -> Report:
    """`graceful_stops`: pid -> when that worker process was sent SIGTERM (and nothing else)."""
    report = Report()
    bad = report.violations.append

    tasks: dict[str, StoredTask] = {}
    for row in stored_tasks:
        if row.key in tasks:
            bad(f"duplicate: {row.key} stored as {tasks[row.key].task_id}, {row.task_id}")
        tasks.setdefault(row.key, row)
    stored_ids = {row.task_id for row in stored_tasks}
    for task_id, trail in transitions.items():
        if task_id not in stored_ids:
            bad(f"vanished: {task_id} was stored ({trail[0].new_status}) and is gone")

    submits: dict[str, list[Op]] = defaultdict(list)
    cancels_ok: dict[str, float] = {}
    for op in ops:
        if op.f == "submit" and op.type != "invoke":
            submits[op.key].append(op)
        elif op.f == "cancel" and op.type == "ok" and op.task_id is not None:
            cancels_ok.setdefault(op.task_id, op.at)
    runs_by_key: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        runs_by_key[run.key].append(run)
    for key in runs_by_key.keys() - tasks.keys():
        bad(f"ran a task that is not stored: {key}")

    unknown_present = unknown_absent = 0
    acknowledged = 0
    for key, outcomes in submits.items():
        stored = tasks.get(key)
        oks = [o for o in outcomes if o.type == "ok"]
        if oks:
            acknowledged += 1
            if stored is None:
                bad(f"lost: submit {key} was acknowledged as {oks[0].task_id} but is not stored")
                continue
            named = {o.task_id for o in oks}
            if named != {stored.task_id}:
                bad(
                    f"idempotency: {key} acknowledged as {sorted(map(str, named))}, "
                    f"stored as {stored.task_id}"
                )
        elif any(o.type == "info" for o in outcomes):
            if stored is None:
                unknown_absent += 1
            else:
                unknown_present += 1
        elif stored is not None:
            bad(f"phantom: submit {key} certainly failed ({outcomes[0].detail}) but is stored")
    for key, stored in tasks.items():
        if key not in submits:
            bad(f"phantom: task {stored.task_id} ({key}) was never submitted by a client")

    latencies: list[float] = []
    statuses: dict[str, int] = defaultdict(int)
    total_attempts = handed_back = 0
    for key, stored in tasks.items():
        task_id = stored.task_id
        statuses[stored.status] += 1
        trail = transitions.get(task_id, [])
        if not trail:
            bad(f"audit: {task_id} has no recorded transitions")
            continue
        for t in trail:
            if (t.old_status, t.new_status) not in LEGAL:
                bad(f"illegal transition {t.old_status} -> {t.new_status} of {task_id}")
            elif (t.old_status, t.new_status) == ("in_progress", "cancelled") and not t.aborted:
                bad(f"cancelled while in_progress without an abort on record: {task_id}")
            elif t.aborted and t.new_status in ("failed", "dead_letter", "completed"):
                bad(f"{t.new_status} after its abort (must end cancelled): {task_id}")
        terminal = [i for i, t in enumerate(trail) if t.new_status in TERMINAL]
        if stored.status not in TERMINAL:
            bad(f"not terminal: {task_id} is {stored.status}")
        elif len(terminal) != 1:
            bad(f"{len(terminal)} terminal transitions of {task_id}")
        elif terminal[0] != len(trail) - 1:
            bad(f"changed after its terminal state: {task_id}")

        for t in trail:
            pid = _expired_lease_pid(t)
            stopped_at = (graceful_stops or {}).get(pid or 0)
            if stopped_at is not None and t.at > stopped_at:
                bad(f"attempt burned by a graceful stop of pid {pid}: {task_id} ({t.error})")

        task_claims = claims(trail)
        tries = sum(1 for c in task_claims if not c.handed_back)
        total_attempts += tries
        handed_back += len(task_claims) - tries
        if tries > stored.max_retries + 1:
            bad(
                f"too many attempts: {task_id} was claimed {tries} times, "
                f"max_retries {stored.max_retries}"
            )
        stopped_running = any(
            (t.old_status, t.new_status) == ("in_progress", "cancelled") for t in trail
        )  # an abort ends its attempt cancelled: the attempt counts, no retry follows
        waited = stored.status == "cancelled" and not stopped_running
        counted = stored.retry_count + (0 if waited else 1)
        if stored.status in TERMINAL and tries != counted:
            bad(f"{tries} attempts of {task_id} but retry_count {stored.retry_count}")
        if stored.status == "dead_letter" and tries != stored.max_retries + 1:
            bad(f"dead-lettered after {tries} of {stored.max_retries + 1} attempts: {task_id}")

        task_runs = runs_by_key.get(key, [])
        if len(task_runs) > tries:
            bad(f"too many runs: {task_id} ran {len(task_runs)} times in {tries} attempts")

        accepted = [
            (i, t)
            for i, t in enumerate(trail)
            if t.result is not None and t.new_status == "completed"
        ]
        if len(accepted) > 1:
            bad(f"{len(accepted)} results accepted for {task_id}")
        if stored.status == "completed":
            completion = trail[terminal[-1]] if terminal else trail[-1]
            current = [c for c in task_claims if c.at <= completion.at]
            since = current[-1].at if current else float("inf")
            producers = [
                r
                for r in task_runs
                if r.outcome == "end" and stored.result is not None
                and r.run_id == stored.result.decode()
            ]  # fmt: skip
            if not producers:
                bad(f"completed {task_id} with a result no finished run produced")
            elif not since <= producers[0].started_at <= completion.at:
                bad(f"completed {task_id} with the result of a run under an earlier claim")
        if task_id in cancels_ok:
            if stored.status != "cancelled":
                bad(f"cancel of {task_id} got 204 but it is {stored.status}")
            if any(c.at > cancels_ok[task_id] for c in task_claims):
                bad(f"claimed after its 204 cancel: {task_id}")
        if terminal:
            latency = trail[terminal[-1]].at - trail[0].at
            latencies.append(latency)
            if latency > bound_seconds:
                bad(f"slow: {task_id} took {latency:.1f}s to finish (bound {bound_seconds:g}s)")

    report.summary = {
        "submits acknowledged": acknowledged,
        "submits unknown, present": unknown_present,
        "submits unknown, absent": unknown_absent,
        "cancels acknowledged": len(cancels_ok),
        "tasks stored": len(stored_tasks),
        "statuses": dict(sorted(statuses.items())),
        "attempts": total_attempts,
        "handler runs": len(runs),
        "runs cut short": sum(1 for r in runs if r.outcome == "none"),
        "claims handed back": handed_back,
        "finish latency p50 s": round(statistics.median(latencies), 2) if latencies else None,
        "finish latency max s": round(max(latencies), 2) if latencies else None,
        "bound s": bound_seconds,
    }
    return report
