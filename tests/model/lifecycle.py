"""The task life cycle as a pure model: what every operation must do to tasks and workers.

It owns the expectations the state machine in `test_lifecycle_machine.py` holds the broker to,
and imports nothing of the broker. It runs on the virtual clock of `clock.py`.

The one thing not to break: the model never asks the broker what should happen. The only values
it takes from the broker are those the broker is free to choose — task ids, lease tokens, which
of the maybe-ready tasks a claim took, the jittered run_at — each checked first against what
the life cycle allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from tests.model.clock import QUANTUM, Limits, Readiness, Window
from tq_client.models import TERMINAL_STATUSES, TaskStatus
from tq_client.protocol import ABORT_GRACE_SECONDS_DEFAULT

ROUNDING_SECONDS = 1e-3  # interval arithmetic on a float backoff rounds to microseconds
WAITING = frozenset({TaskStatus.PENDING, TaskStatus.FAILED})


class ModelViolation(AssertionError):
    """The broker did something the life cycle does not allow."""


@dataclass
class RunAt:
    """What the database's run_at must be.

    `exact`: a value seen before, in the database's frame (moved back with every time shift).
    `after_update`: a value set by the last write and not yet seen: updated_at plus a backoff
    within [low, high] seconds. The machine checks it after the step and then keeps it exact.
    """

    exact: datetime | None = None
    after_update: tuple[float, float] | None = None


@dataclass(frozen=True)
class Submission:
    task_type: str
    priority: int
    timeout_seconds: int
    max_retries: int
    delay_seconds: int  # 0: no schedule_at


@dataclass
class Task:
    ref: str  # "t3": a short name for messages
    task_id: UUID
    submission: Submission
    window: Window
    run_at: RunAt
    created_at: int
    updated_at: int
    idempotency_key: str | None
    status: TaskStatus = TaskStatus.PENDING
    retry_count: int = 0
    claimed_at: int | None = None
    lease_expires_at: int | None = None
    finished_at: int | None = None
    worker_id: str | None = None
    lease_token: UUID | None = None
    tokens: list[UUID] = field(default_factory=list)  # every token handed out, oldest first
    result: bytes | None = None
    error: str | None = None
    deleted: bool = False
    aborted_at: int | None = None  # POST .../abort: the task ends cancelled, never retried

    def __str__(self) -> str:
        state = "deleted" if self.deleted else self.status.value
        limit = self.submission.max_retries
        return f"{self.ref} ({state}, retry {self.retry_count}/{limit})"

    def rank(self) -> tuple[int, datetime]:
        """The claim's ORDER BY priority DESC, run_at."""
        if self.run_at.exact is None:
            raise ValueError(f"{self}: run_at was never observed")
        return (-self.submission.priority, self.run_at.exact)

    def observe_run_at(self, run_at: datetime, updated_at: datetime) -> None:
        """Check the database's run_at against the model, then keep the value seen."""
        expected = self.run_at
        if expected.after_update is None:
            if run_at != expected.exact:
                raise ModelViolation(f"{self}: run_at moved from {expected.exact} to {run_at}")
            return
        low, high = expected.after_update
        delay = (run_at - updated_at).total_seconds()
        if not low - ROUNDING_SECONDS <= delay <= high + ROUNDING_SECONDS:
            raise ModelViolation(
                f"{self}: run_at is {delay:.3f}s after the update; the life cycle says "
                f"between {low:g}s and {high:g}s"
            )
        self.run_at = RunAt(exact=run_at)

    def holds(self, token: UUID) -> bool:
        """Whether `token` is this task's current lease."""
        return (
            not self.deleted and self.status is TaskStatus.IN_PROGRESS and self.lease_token == token
        )


@dataclass
class Worker:
    worker_id: str
    task_types: tuple[str, ...]
    known: bool = False  # the broker has a row for it
    online: bool = False
    registered_at: int = 0
    last_heartbeat: int = 0
    current_tasks: int = 0


@dataclass(frozen=True)
class BatchOutcome:
    """What complete / fail / release must answer: 200 with the split, or 409 if none passed."""

    accepted: list[UUID]
    rejected: list[UUID]

    @property
    def status_code(self) -> int:
        return 200 if self.accepted else 409


class Lifecycle:
    def __init__(self, limits: Limits, workers: Mapping[str, Sequence[str]]) -> None:
        self.limits = limits
        self.now = 0
        self.tasks: dict[UUID, Task] = {}
        self.workers = {w: Worker(w, tuple(types)) for w, types in workers.items()}
        self._keys: dict[str, tuple[UUID, dict[str, object]]] = {}

    def live(self) -> list[Task]:
        return [t for t in self.tasks.values() if not t.deleted]

    def advance(self, seconds: int) -> None:
        if seconds <= 0 or seconds % QUANTUM:
            raise ValueError(f"time moves forward in multiples of {QUANTUM}s, not {seconds}")
        self.now += seconds
        for task in self.live():
            if task.run_at.exact is not None:
                task.run_at.exact -= timedelta(seconds=seconds)

    # -- submit ----------------------------------------------------------------------------

    def submit_outcome(
        self, key: str | None, body: Mapping[str, object]
    ) -> tuple[int, Task | None]:
        """201 for a new task; 200 and the earlier task for an idempotent repeat; 409 for a key
        reused with another body."""
        earlier = self._keys.get(key) if key is not None else None
        if earlier is None:
            return 201, None
        task = self.tasks[earlier[0]]
        return (200 if earlier[1] == dict(body) else 409), task

    def submitted(
        self,
        task_id: UUID,
        submission: Submission,
        key: str | None,
        body: Mapping[str, object],
        schedule_at: datetime | None,
    ) -> Task:
        ready = self.now + submission.delay_seconds
        task = Task(
            ref=f"t{len(self.tasks)}",
            task_id=task_id,
            submission=submission,
            window=Window(ready, ready),
            run_at=RunAt(exact=schedule_at) if schedule_at else RunAt(after_update=(0.0, 0.0)),
            created_at=self.now,
            updated_at=self.now,
            idempotency_key=key,
        )
        self.tasks[task_id] = task
        if key is not None:
            self._keys[key] = (task_id, dict(body))
        return task

    def keyed(self) -> list[tuple[str, dict[str, object]]]:
        """Idempotency keys in use, with the body first sent with each."""
        return [(key, dict(body)) for key, (_, body) in self._keys.items()]

    # -- claims ----------------------------------------------------------------------------

    def claim_refusal(self, worker_id: str) -> int | None:
        """404 for a worker the broker does not know, 409 for one marked offline, else None."""
        worker = self.workers[worker_id]
        if not worker.known:
            return 404
        return None if worker.online else 409

    def candidates(self, worker_id: str) -> tuple[list[Task], list[Task]]:
        """Waiting tasks of the worker's types: certainly ready, and maybe ready."""
        types = self.workers[worker_id].task_types
        waiting = [
            t for t in self.live() if t.status in WAITING and t.submission.task_type in types
        ]
        ready = [t for t in waiting if t.window.at(self.now) is Readiness.READY]
        either = [t for t in waiting if t.window.at(self.now) is Readiness.EITHER]
        return ready, either

    def claimed(self, worker_id: str, max_tasks: int, leases: Sequence[tuple[UUID, UUID]]) -> None:
        """Check a claim's answer against the life cycle, then apply it."""
        ready, either = self.candidates(worker_id)
        claimable = {t.task_id: t for t in [*ready, *either]}
        ids = [task_id for task_id, _ in leases]
        if len(set(ids)) != len(ids):
            raise ModelViolation(f"one claim handed out a task twice: {ids}")
        for task_id in ids:
            if task_id not in claimable:
                task = self.tasks.get(task_id)
                raise ModelViolation(
                    f"claim by {worker_id} handed out {task or task_id}, which "
                    "is not claimable (wrong status, type, or not ready yet)"
                )
        chosen = [claimable[i] for i in ids]
        # The fewest competitors the answer can have had: the certain ones, plus those of the
        # maybe-ready ones it proved ready by handing them out.
        pool = [*ready, *(t for t in either if t.task_id in ids)]
        if len(chosen) != min(max_tasks, len(pool)):
            raise ModelViolation(
                f"claim by {worker_id} of up to {max_tasks} handed out {len(chosen)} tasks; "
                f"ready: {[str(t) for t in ready]}"
            )
        if chosen:
            worst = max(t.rank() for t in chosen)
            better = [str(t) for t in pool if t.task_id not in ids and t.rank() < worst]
            if better:
                raise ModelViolation(f"claim by {worker_id} passed over better tasks {better}")
            if [t.rank() for t in chosen] != sorted(t.rank() for t in chosen):
                raise ModelViolation("claim answer is not in priority, run_at order")
        handed_out = {token for t in self.tasks.values() for token in t.tokens}
        for task, (_, token) in zip(chosen, leases, strict=True):
            if token in handed_out:
                raise ModelViolation(f"claim of {task} reused lease token {token}")
            task.status = TaskStatus.IN_PROGRESS
            task.worker_id = worker_id
            task.lease_token = token
            task.tokens.append(token)
            task.claimed_at = task.updated_at = self.now
            task.lease_expires_at = self.now + self.limits.lease_ttl_seconds
            # It was ready at this claim, so it stays ready (say, after a release).
            task.window = Window(self.now, self.now)

    # -- leases ----------------------------------------------------------------------------

    def heartbeat(
        self, worker_id: str, leases: Sequence[tuple[UUID, UUID]], current_tasks: int
    ) -> tuple[int, list[UUID], list[UUID], list[UUID]]:
        """Status code, renewed, abandoned and to-abort task ids."""
        worker = self.workers[worker_id]
        if not (worker.known and worker.online):
            return 404, [], [], []
        worker.last_heartbeat = self.now
        worker.current_tasks = current_tasks
        renewed, abandon = [], []
        for task_id, token in leases:
            task = self.tasks.get(task_id)
            # Only the worker's own leases: another worker's valid token renews nothing.
            if task is not None and task.holds(token) and task.worker_id == worker_id:
                task.lease_expires_at = self.now + self.limits.lease_ttl_seconds
                renewed.append(task_id)
            else:
                abandon.append(task_id)
        aborts = [t for t in renewed if self.tasks[t].aborted_at is not None]
        return 200, renewed, abandon, aborts

    def _split(self, leases: Iterable[tuple[UUID, UUID]]) -> tuple[list[Task], BatchOutcome]:
        accepted, rejected = [], []
        for task_id, token in leases:
            task = self.tasks.get(task_id)
            if task is not None and task.holds(token):
                accepted.append(task)
            else:
                rejected.append(task_id)
        return accepted, BatchOutcome([t.task_id for t in accepted], rejected)

    def complete(self, items: Sequence[tuple[UUID, UUID, bytes]]) -> BatchOutcome:
        accepted, outcome = self._split((task_id, token) for task_id, token, _ in items)
        results = {task_id: result for task_id, _, result in items}
        for task in accepted:
            aborted = task.aborted_at is not None  # cancelled, whatever the handler returned
            task.status = TaskStatus.CANCELLED if aborted else TaskStatus.COMPLETED
            task.result = results[task.task_id]
            task.error = None
            task.lease_token = task.lease_expires_at = None
            task.finished_at = task.updated_at = self.now
        return outcome

    def fail(self, items: Sequence[tuple[UUID, UUID, str, bool]]) -> BatchOutcome:
        accepted, outcome = self._split((task_id, token) for task_id, token, _, _ in items)
        reports = {task_id: (error, retryable) for task_id, _, error, retryable in items}
        for task in accepted:
            self._failed_attempt(task, *reports[task.task_id])
        return outcome

    def _failed_attempt(self, task: Task, error: str, retryable: bool) -> TaskStatus:
        if task.aborted_at is not None:  # an aborted task is cancelled, never retried
            task.status = TaskStatus.CANCELLED
            task.finished_at = task.updated_at = self.now
            task.error = error
            task.lease_token = task.lease_expires_at = None
            return task.status
        backoff = self.limits.backoff(task.retry_count)
        task.run_at = RunAt(after_update=(backoff / 2, float(backoff)))
        if retryable and task.retry_count < task.submission.max_retries:
            task.status = TaskStatus.FAILED
            task.retry_count += 1
            task.finished_at = None
            task.window = Window(self.now + backoff // 2, self.now + backoff)
        else:
            task.status = TaskStatus.DEAD_LETTER
            task.finished_at = self.now
        task.error = error
        task.lease_token = task.lease_expires_at = None
        task.updated_at = self.now
        return task.status

    def release(self, leases: Sequence[tuple[UUID, UUID]]) -> BatchOutcome:
        accepted, outcome = self._split(leases)
        for task in accepted:
            aborted = task.aborted_at is not None
            task.status = TaskStatus.CANCELLED if aborted else TaskStatus.PENDING
            task.finished_at = self.now if aborted else None
            task.lease_token = task.lease_expires_at = task.claimed_at = None
            task.worker_id = None
            task.updated_at = self.now
        return outcome

    def current_leases(self) -> list[tuple[UUID, UUID, str]]:
        """Task, token and worker of every lease still current."""
        return [
            (t.task_id, t.lease_token, t.worker_id)
            for t in self.live()
            if t.lease_token is not None and t.worker_id is not None
        ]

    def dead_letters(self) -> list[UUID]:
        return [t.task_id for t in self.live() if t.status is TaskStatus.DEAD_LETTER]

    def stale_leases(self, running: bool = False) -> list[tuple[Task, UUID]]:
        """Tokens handed out earlier that are no longer their task's current lease; with
        running, only those of tasks running again under a newer lease (the dangerous case)."""
        return [
            (t, token)
            for t in self.tasks.values()
            for token in t.tokens
            if not t.holds(token) and (t.lease_token is not None or not running)
        ]

    # -- admin and clients -----------------------------------------------------------------

    def cancel(self, task_id: UUID) -> int:
        task = self.tasks[task_id]
        if task.deleted:
            return 404
        if task.status not in WAITING:
            return 409
        task.status = TaskStatus.CANCELLED
        task.finished_at = task.updated_at = self.now
        task.lease_token = None
        return 204

    def abort(self, task_id: UUID) -> int:
        """A waiting task is cancelled (200), a running one marked once (202)."""
        task = self.tasks[task_id]
        if task.deleted:
            return 404
        if task.status in WAITING:
            self.cancel(task_id)
            task.aborted_at = self.now
            return 200
        if task.status is not TaskStatus.IN_PROGRESS:
            return 409
        if task.aborted_at is None:
            task.aborted_at = task.updated_at = self.now
        return 202

    def requeue(self, task_id: UUID) -> int:
        task = self.tasks[task_id]
        if task.deleted:
            return 404
        if task.status is not TaskStatus.DEAD_LETTER:
            return 409
        task.status = TaskStatus.PENDING
        task.retry_count = 0
        task.run_at = RunAt(after_update=(0.0, 0.0))
        task.window = Window(self.now, self.now)
        task.finished_at = task.lease_token = task.lease_expires_at = task.claimed_at = None
        task.updated_at = self.now
        return 200

    def register(self, worker_id: str) -> int:
        worker = self.workers[worker_id]
        if not (worker.known and worker.online):
            worker.registered_at = self.now
        if not worker.known:
            worker.current_tasks = 0
        worker.known = worker.online = True
        worker.last_heartbeat = self.now
        return 201

    def deregister(self, worker_id: str) -> int:
        worker = self.workers[worker_id]
        if not worker.known:
            return 404
        worker.online = False
        worker.current_tasks = 0
        for task in self.live():
            if task.status is TaskStatus.IN_PROGRESS and task.worker_id == worker_id:
                task.lease_expires_at = self.now  # due for rescue at once
        return 204

    # -- the leader's sweeps ---------------------------------------------------------------

    def rescue(self) -> tuple[int, int]:
        """Retried and dead-lettered counts of one rescuer run."""
        retried = dead = 0
        for task in self.live():
            if task.status is not TaskStatus.IN_PROGRESS:
                continue
            assert task.lease_expires_at is not None and task.claimed_at is not None
            timeout = task.submission.timeout_seconds
            lease_gone = self.now >= task.lease_expires_at
            deadline = task.claimed_at + timeout + self.limits.deadline_grace_seconds
            given_up = task.aborted_at is not None and self.now >= (
                task.aborted_at + ABORT_GRACE_SECONDS_DEFAULT + self.limits.deadline_grace_seconds
            )
            if not lease_gone and not given_up and self.now < deadline:
                continue
            worker = task.worker_id or "?"
            if lease_gone:
                reason = f"lease expired: worker {worker} stopped heartbeating"
            elif given_up:
                reason = f"aborted: worker {worker} did not stop the task"
            else:
                reason = (
                    f"deadline exceeded: still running {timeout}s after it was claimed "
                    f"(worker {worker})"
                )
            outcome = self._failed_attempt(task, reason, retryable=True)
            retried += outcome is TaskStatus.FAILED
            dead += outcome is TaskStatus.DEAD_LETTER
        return retried, dead

    def reap(self) -> int:
        marked = 0
        for worker in self.workers.values():
            silent = self.now - worker.last_heartbeat >= self.limits.worker_silent_seconds
            if worker.known and worker.online and silent:
                worker.online = False
                worker.current_tasks = 0
                marked += 1
        return marked

    def clean(self) -> tuple[int, int]:
        """Deleted tasks and workers of one cleaner run."""
        retention = self.limits.retention_seconds
        tasks = 0
        for task in self.live():
            finished = task.finished_at
            expired = finished is not None and self.now - finished >= retention
            if task.status in TERMINAL_STATUSES and expired:
                task.deleted = True
                tasks += 1
        self._keys = {k: v for k, v in self._keys.items() if not self.tasks[v[0]].deleted}
        workers = 0
        for worker in self.workers.values():
            gone = self.now - worker.last_heartbeat >= retention
            if worker.known and not worker.online and gone:
                worker.known = False
                workers += 1
        return tasks, workers
