"""What the state machine checks: the database and the API against the model after every step,
and the life cycle's own rules on what the broker shows, whatever the model says.

The one thing not to break: the graph checks (`EDGES`, terminal rows frozen, a cancelled task
never claimed, one accepted result per task) look only at what the broker answered and stored,
never at the model, so a mistake shared by the model and the broker still cannot hide there.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from tests.model.clock import QUANTUM, STATS_WINDOW_SECONDS, Readiness
from tests.model.harness import Broker, Row
from tests.model.lifecycle import WAITING, Lifecycle, Task
from tq_client.models import TERMINAL_STATUSES, TaskStatus, priority_bucket

# The real time one example may take; far below QUANTUM (see clock.py).
SLACK = timedelta(seconds=QUANTUM // 2)

# The life cycle's edges as the database shows them; None: not stored yet, "deleted": cleaned.
EDGES = {
    (None, "pending"),
    ("pending", "in_progress"),
    ("pending", "cancelled"),
    ("in_progress", "completed"),
    ("in_progress", "failed"),
    ("in_progress", "dead_letter"),
    ("in_progress", "pending"),  # release
    ("failed", "in_progress"),
    ("failed", "cancelled"),
    ("dead_letter", "pending"),  # admin requeue
    ("completed", "deleted"),
    ("dead_letter", "deleted"),
    ("cancelled", "deleted"),
}
TERMINAL = {s.value for s in TERMINAL_STATUSES}
FROZEN_COLUMNS = ("status", "retry_count", "result", "error", "worker_id", "lease_token")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class StatsExpectation:
    counts: dict[str, object]  # the fields of GET /api/v1/stats that are exact
    processing_seconds: list[int]  # claimed_at to finished_at of the completions counted


def expected_stats(model: Lifecycle) -> StatsExpectation:
    live = model.live()
    pending = [t for t in live if t.status is TaskStatus.PENDING]

    def recent(at: int | None) -> bool:
        return at is not None and model.now - at < STATS_WINDOW_SECONDS

    completed = [t for t in live if t.status is TaskStatus.COMPLETED and recent(t.finished_at)]
    failed = [t for t in live if t.status in (TaskStatus.FAILED, TaskStatus.DEAD_LETTER)]
    depth = {"high": 0, "normal": 0, "low": 0}
    for task in pending:  # queue depth: the pending tasks due now (scheduled ones wait)
        if task.window.at(model.now) is Readiness.READY:
            depth[priority_bucket(task.submission.priority)] += 1
    counts: dict[str, object] = {
        "pending_count": len(pending),
        "in_progress_count": sum(t.status is TaskStatus.IN_PROGRESS for t in live),
        "completed_last_hour": len(completed),
        "failed_last_hour": sum(recent(t.updated_at) for t in failed),
        "worker_count": sum(w.known and w.online for w in model.workers.values()),
        "queue_depth_by_priority": depth,
    }
    durations = [
        t.finished_at - t.claimed_at
        for t in completed
        if t.finished_at is not None and t.claimed_at is not None
    ]
    return StatsExpectation(counts, durations)


def expected_queue_depth(model: Lifecycle, task_types: Iterable[str]) -> tuple[range, int, int]:
    """Possible `ready` counts, ready + scheduled, and in_progress for these task types."""
    types = set(task_types)
    mine = [t for t in model.live() if t.submission.task_type in types]
    waiting = [t for t in mine if t.status in WAITING]
    ready = sum(t.window.at(model.now) is Readiness.READY for t in waiting)
    either = sum(t.window.at(model.now) is Readiness.EITHER for t in waiting)
    running = sum(t.status is TaskStatus.IN_PROGRESS for t in mine)
    return range(ready, ready + either + 1), len(waiting), running


class Checks:
    def __init__(self, broker: Broker, model: Lifecycle) -> None:
        self.broker = broker
        self.api = broker.api
        self.model = model
        self.touched: set[UUID] = set()  # acted on in this step: checked through GET as well
        self._requeued: set[UUID] = set()  # requeue answered 200 in this step
        self._requeues: Counter[UUID] = Counter()
        self._seen: dict[UUID, str] = {}  # the last status the database showed, or "deleted"
        self._terminal_entries: Counter[UUID] = Counter()
        self._frozen: dict[UUID, tuple[Any, ...]] = {}  # terminal rows, which must not change
        self._cancelled: set[UUID] = set()  # cancel answered 204
        self._results: Counter[UUID] = Counter()  # completions accepted

    # -- what the rules report -------------------------------------------------------------

    def cancelled(self, task_id: UUID) -> None:
        self._cancelled.add(task_id)

    def requeued(self, task_id: UUID) -> None:
        self._requeued.add(task_id)
        self._requeues[task_id] += 1

    def claimed(self, task_ids: Iterable[UUID]) -> None:
        revived = [t for t in task_ids if t in self._cancelled]
        assert not revived, f"tasks whose cancel answered 204 were claimed: {revived}"

    def completed(self, task_ids: Iterable[UUID]) -> None:
        for task_id in task_ids:
            self._results[task_id] += 1
            assert self._results[task_id] == 1, f"a second result was accepted for {task_id}"

    # -- after every step ------------------------------------------------------------------

    def after_step(self) -> None:
        rows = self.broker.task_rows()
        workers = self.broker.worker_rows()
        db_now = self.broker.now()
        live = {t.task_id: t for t in self.model.live()}
        missing = [str(live[t]) for t in set(live) - set(rows)]
        unexpected = [str(self.model.tasks.get(t, t)) for t in set(rows) - set(live)]
        assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
        for task_id, task in live.items():
            self._row(task, rows[task_id], db_now)
        self._transitions(rows)
        self._workers(workers, db_now)
        for task_id in sorted(self.touched):
            self._detail(self.model.tasks[task_id])
        self._stats()
        self.touched.clear()
        self._requeued.clear()

    def _stamp(self, what: str, value: datetime | None, virtual: int | None, now: datetime) -> None:
        """A stored timestamp against its virtual instant: behind by the real time since."""
        if virtual is None:
            assert value is None, f"{what} is {value}; the model has none"
            return
        assert value is not None, f"{what} is empty; the model has one"
        latest = now - timedelta(seconds=self.model.now - virtual)
        assert latest - SLACK <= value <= latest, f"{what} is {latest - value} off"

    def _row(self, task: Task, row: Row, db_now: datetime) -> None:
        where = str(task)
        assert row["status"] == task.status.value, f"{where}: the database says {row['status']}"
        assert row["retry_count"] == task.retry_count, f"{where}: retry_count {row['retry_count']}"
        assert row["retry_count"] <= row["max_retries"], f"{where}: more attempts than allowed"
        assert row["lease_token"] == task.lease_token, f"{where}: not the latest lease token"
        if task.status is TaskStatus.IN_PROGRESS:
            assert task.lease_token == task.tokens[-1]
        assert row["worker_id"] == task.worker_id, f"{where}: worker {row['worker_id']}"
        result = None if row["result"] is None else bytes(row["result"])
        assert result == task.result, f"{where}: result {result!r}"
        assert row["error"] == task.error, f"{where}: error {row['error']!r}"
        spec = task.submission
        stored = (row["task_type"], row["priority"], row["timeout_seconds"], row["max_retries"])
        assert stored == (spec.task_type, spec.priority, spec.timeout_seconds, spec.max_retries)
        task.observe_run_at(row["run_at"], row["updated_at"])
        for column in ("created_at", "updated_at", "claimed_at", "lease_expires_at", "finished_at"):
            self._stamp(f"{where}: {column}", row[column], getattr(task, column), db_now)

    def _transitions(self, rows: dict[UUID, Row]) -> None:
        for task_id, task in self.model.tasks.items():
            row = rows.get(task_id)
            status = row["status"] if row is not None else "deleted"
            before = self._seen.get(task_id)
            if status != before:
                assert (before, status) in EDGES, f"{task}: {before} -> {status}"
                if before == "dead_letter" and status == "pending":
                    assert task_id in self._requeued, f"{task}: left dead_letter unrequeued"
                if status in TERMINAL:
                    self._terminal_entries[task_id] += 1
                    limit = 1 + self._requeues[task_id]
                    assert self._terminal_entries[task_id] <= limit, f"{task}: terminal again"
                self._seen[task_id] = status
            if row is not None and status in TERMINAL:
                frozen = tuple(row[c] for c in FROZEN_COLUMNS)
                assert self._frozen.setdefault(task_id, frozen) == frozen, f"{task} changed"
            else:
                self._frozen.pop(task_id, None)

    def _workers(self, rows: dict[str, Row], db_now: datetime) -> None:
        known = {w.worker_id: w for w in self.model.workers.values() if w.known}
        assert set(rows) == set(known), f"workers {sorted(rows)}; the model has {sorted(known)}"
        for worker_id, worker in known.items():
            row = rows[worker_id]
            status = "online" if worker.online else "offline"
            assert (row["status"], row["current_tasks"]) == (status, worker.current_tasks)
            for column in ("registered_at", "last_heartbeat"):
                virtual = getattr(worker, column)
                self._stamp(f"{worker_id}: {column}", row[column], virtual, db_now)

    def _detail(self, task: Task) -> None:
        response = self.api.get(f"/api/v1/tasks/{task.task_id}")
        if task.deleted:
            assert response.status_code == 404, f"{task}: GET answered {response.status_code}"
            return
        assert response.status_code == 200, response.text
        detail = response.json()
        shown = tuple(detail[k] for k in ("status", "retry_count", "worker_id", "error", "result"))
        result = None if task.result is None else b64(task.result)
        expected = (task.status.value, task.retry_count, task.worker_id, task.error, result)
        assert shown == expected, f"{task}: GET shows {shown}"

    def _stats(self) -> None:
        expected = expected_stats(self.model)
        stats = self.api.get("/api/v1/stats").json()
        assert {k: stats[k] for k in expected.counts} == expected.counts
        durations = expected.processing_seconds
        average = stats["avg_processing_time_ms"]
        if not durations:
            assert average == 0
            return
        low = 1000 * sum(durations) / len(durations)
        high = low + 1000 * SLACK.total_seconds()
        assert low - 0.001 <= average <= high, f"avg_processing_time_ms {average}, not ~{low}"

    # -- on demand -------------------------------------------------------------------------

    def listing(self, status: TaskStatus | None) -> None:
        """GET /api/v1/tasks (newest first), optionally by status."""
        params: dict[str, str | int] = {"limit": 1000}
        if status is not None:
            params["status"] = status.value
        response = self.api.get("/api/v1/tasks", params=params)
        assert response.status_code == 200, response.text
        shown = [(UUID(t["task_id"]), t["status"]) for t in response.json()]
        newest_first = reversed(self.model.live())
        expected = [(t.task_id, t.status.value) for t in newest_first if status in (None, t.status)]
        assert shown == expected

    def queue_depth(self, task_types: tuple[str, ...]) -> None:
        ready, waiting, running = expected_queue_depth(self.model, task_types)
        response = self.api.get("/api/v1/queue-depth", params={"task_type": list(task_types)})
        assert response.status_code == 200, response.text
        depth = response.json()
        assert depth["ready"] in ready, f"ready {depth['ready']}, expected within {ready}"
        assert depth["ready"] + depth["scheduled"] == waiting
        assert depth["in_progress"] == running
