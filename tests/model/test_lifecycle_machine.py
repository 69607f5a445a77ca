"""A model-based test of the task life cycle (ARCHITECTURE.md) against the real broker.

Hypothesis drives the broker — FastAPI in-process, real PostgreSQL — with random sequences of
steps, and after every step checks the database (read directly) and the API against the pure
model in `lifecycle.py` (checks.py). A failure is shrunk to a short sequence of steps.

Steps: submit (task type, priority on both sides of the bucket limits, max_retries 0..3,
timeout, sometimes scheduled, sometimes with an idempotency key, which is reused with the same
or another body); claim a batch of up to 3; heartbeat the leases named; complete, fail
(retryable or not) or release with any lease handed out so far, current or stale; replay a stale
lease token on purpose (409 or `abandon`, and the row does not change); cancel; the admin
requeue, of any task and of a dead letter; workers register, heartbeat, deregister; a minute
passes in a healthy cluster (workers renew their leases, the leader sweeps, idle workers claim);
time passes in bigger jumps, with or without heartbeats and sweeps; the leader's sweeps
(rescuer, reaper, cleaner), which never run on their own timing; list tasks, poll queue depth.

After every step: the rows of tq_tasks and tq_workers are exactly the model's — status,
retry_count (attempts = retry_count + 1 <= max_retries + 1), the latest lease token handed out,
worker, result, error, run_at (a retry's backoff inside its jitter window), every timestamp; the
status changed along an edge of the life cycle, a terminal task did not change (but for the
requeue of a dead letter); GET of every task touched and the stats agree with the model. In the
steps: a task whose cancel answered 204 is never claimed, no task has two accepted results, a
claim takes the best ready tasks, and certainly-ready ones are never passed over.

Time passes without sleeping: every stored timestamp is moved back (harness.py); the model keeps
a virtual clock (clock.py explains why its decisions stay exact).

Runs: 60 examples of up to 30 steps, about a minute. TQ_MODEL_EXAMPLES=500 for a longer local
run. Locally each run explores new sequences and first replays the failures it remembers in
.hypothesis/; under CI (env CI set) the run is derandomized: the same sequences every time.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import create_database, drop_database
from tests.model.checks import Checks, b64
from tests.model.clock import MAX_RETRIES_MODELLED, QUANTUM, Limits
from tests.model.harness import Broker, running_broker
from tests.model.lifecycle import Lifecycle, Submission
from tq_broker.embedded import EmbeddedPostgres
from tq_client.models import TaskStatus

LIMITS = Limits()
WORKERS = {"worker-a": ("alpha",), "worker-b": ("alpha", "beta")}
WORKER_IDS = sorted(WORKERS)
TASK_TYPES = ("alpha", "beta")
PRIORITIES = (100, 0, 99, 199, 200, 255)  # each side of both bucket limits
TIMEOUTS = (5 * QUANTUM, QUANTUM, 2 * QUANTUM)
DELAYS = (0, QUANTUM, 3 * QUANTUM)
TIME_STEPS = (QUANTUM, QUANTUM, 2 * QUANTUM, 3 * QUANTUM, 5 * QUANTUM, 60 * QUANTUM)
KEYS = (None, None, None, "key-1", "key-2")
REPORTS = ("complete", "fail", "give up", "release")  # give up: fail, not retryable
SWEEPS = ("rescuer", "reaper", "cleaner")  # in the order the leader's runner has them
VIEWS = (
    "tasks:",
    *(f"tasks:{status.value}" for status in TaskStatus),
    *(f"depth:{types}" for types in ("alpha,beta", "alpha", "beta")),
)

# What the pinned random() returns in an example (harness.py). Each puts every backoff's ready
# time at least JITTER_MARGIN seconds past a tick of the virtual clock, so the little real time
# an example takes never decides whether a task is claimable at that tick.
JITTERS = (0.3, 0.2, 0.45, 0.6, 0.75, 0.95)
JITTER_MARGIN = 10.0
assert all(
    (LIMITS.backoff(n) / 2 * jitter) % QUANTUM >= JITTER_MARGIN
    for jitter in JITTERS
    for n in range(MAX_RETRIES_MODELLED + 1)
)

settings.register_profile(
    "tq-model",
    max_examples=int(os.environ.get("TQ_MODEL_EXAMPLES", "60")),
    stateful_step_count=30,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),  # which also keeps no example database
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # Shrink the first bug found and stop there: every replay of a sequence costs real requests.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    print_blob=True,
)

submissions = st.builds(
    Submission,
    task_type=st.sampled_from(TASK_TYPES),
    priority=st.sampled_from(PRIORITIES),
    timeout_seconds=st.sampled_from(TIMEOUTS),
    max_retries=st.integers(0, MAX_RETRIES_MODELLED),
    delay_seconds=st.sampled_from(DELAYS),
)


@dataclass(frozen=True)
class Lease:
    task_id: UUID
    token: UUID
    worker_id: str  # who claimed it (the broker does not check who reports)


def has_leases(machine: LifecycleMachine) -> bool:
    return bool(machine.bundle("leases"))


def task_of(lease: Lease) -> UUID:
    return lease.task_id


class LifecycleMachine(RuleBasedStateMachine):
    tasks: Bundle[UUID] = Bundle("tasks")
    leases: Bundle[Lease] = Bundle("leases")

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        broker.reset()
        self.broker = broker
        self.api = broker.api
        self.model = Lifecycle(LIMITS, WORKERS)
        self.checks = Checks(broker, self.model)
        self.serial = itertools.count()

    @initialize(
        target=tasks,
        batch=st.lists(submissions, min_size=1, max_size=6),
        jitter=st.sampled_from(JITTERS),
    )
    def start(self, batch: list[Submission], jitter: float) -> MultipleResults[UUID]:
        """Workers register and a few tasks wait: most sequences get to the interesting part."""
        self.broker.set_jitter(jitter)
        for worker_id in WORKER_IDS:
            self._register(worker_id)
        created = [self._submit_new(submission, None) for submission in batch]
        return multiple(*(task_id for result in created for task_id in result.values))

    @invariant()
    def database_and_api_agree_with_the_model(self) -> None:
        self.checks.after_step()

    # -- clients ---------------------------------------------------------------------------

    @rule(target=tasks, submission=submissions, key=st.sampled_from(KEYS))
    def submit(self, submission: Submission, key: str | None) -> MultipleResults[UUID]:
        return self._submit_new(submission, key)

    @precondition(lambda self: bool(self.model.keyed()))
    @rule(data=st.data(), same_body=st.booleans())
    def resubmit_with_a_used_key(self, data: st.DataObject, same_body: bool) -> None:
        key, body = data.draw(st.sampled_from(self.model.keyed()), label="key and first body")
        if not same_body:
            body = {**body, "priority": (int(str(body["priority"])) + 1) % 256}
        self._submit(body, key, None, None)

    def _submit_new(self, submission: Submission, key: str | None) -> MultipleResults[UUID]:
        body: dict[str, object] = {
            "task_type": submission.task_type,
            "priority": submission.priority,
            "timeout_seconds": submission.timeout_seconds,
            "max_retries": submission.max_retries,
        }
        schedule_at = None
        if submission.delay_seconds:
            schedule_at = self.broker.now() + timedelta(seconds=submission.delay_seconds)
            body["schedule_at"] = schedule_at.isoformat()
        return self._submit(body, key, submission, schedule_at)

    def _submit(
        self,
        body: dict[str, object],
        key: str | None,
        submission: Submission | None,
        schedule_at: datetime | None,
    ) -> MultipleResults[UUID]:
        headers = {"Idempotency-Key": key} if key else {}
        response = self.api.post("/api/v1/tasks", json=body, headers=headers)
        expected, earlier = self.model.submit_outcome(key, body)
        assert response.status_code == expected, response.text
        if expected == 409:
            return multiple()
        task_id = UUID(response.json()["task_id"])
        status = response.json()["status"]
        self.checks.touched.add(task_id)
        if earlier is not None:
            assert (task_id, status) == (earlier.task_id, earlier.status.value), "not a repeat"
            return multiple()
        assert status == "pending"
        assert task_id not in self.model.tasks, "a new task reused an id"
        assert submission is not None
        self.model.submitted(task_id, submission, key, body, schedule_at)
        return multiple(task_id)

    @rule(task_id=tasks, action=st.sampled_from(("cancel", "requeue")))
    def cancel_or_requeue(self, task_id: UUID, action: str) -> None:
        """A user cancels, or an admin requeues, any task: the answer depends on its status."""
        if action == "cancel":
            self._cancel(task_id)
        else:
            self._requeue(task_id)

    @precondition(lambda self: bool(self.model.dead_letters()))
    @rule(data=st.data())
    def requeue_a_dead_letter(self, data: st.DataObject) -> None:
        self._requeue(data.draw(st.sampled_from(self.model.dead_letters()), label="dead letter"))

    def _cancel(self, task_id: UUID) -> None:
        response = self.api.delete(f"/api/v1/tasks/{task_id}")
        expected = self.model.cancel(task_id)
        assert response.status_code == expected, response.text
        if expected == 204:
            self.checks.cancelled(task_id)
        else:
            assert "error" in response.json()
        self.checks.touched.add(task_id)

    def _requeue(self, task_id: UUID) -> None:
        response = self.api.post(f"/api/v1/tasks/{task_id}/requeue")
        expected = self.model.requeue(task_id)
        assert response.status_code == expected, response.text
        if expected == 200:
            assert response.json() == {"task_id": str(task_id), "status": "pending"}
            self.checks.requeued(task_id)
        self.checks.touched.add(task_id)

    @rule(view=st.sampled_from(VIEWS))
    def someone_looks(self, view: str) -> None:
        """A client lists tasks (optionally by status), or an autoscaler polls queue depth."""
        what, _, argument = view.partition(":")
        if what == "tasks":
            self.checks.listing(TaskStatus(argument) if argument else None)
        else:
            self.checks.queue_depth(tuple(argument.split(",")))

    # -- workers ---------------------------------------------------------------------------

    @rule(
        worker_id=st.sampled_from(WORKER_IDS),
        action=st.sampled_from(("heartbeat", "register", "deregister")),
    )
    def worker_comes_or_goes(self, worker_id: str, action: str) -> None:
        if action == "heartbeat":
            self._heartbeat(worker_id, [])
        elif action == "register":
            self._register(worker_id)
        else:
            response = self.api.delete(f"/api/v1/workers/{worker_id}")
            assert response.status_code == self.model.deregister(worker_id), response.text

    def _register(self, worker_id: str) -> None:
        body = {"worker_id": worker_id, "task_types": list(WORKERS[worker_id]), "concurrency": 4}
        response = self.api.post("/api/v1/workers", json=body)
        assert response.status_code == self.model.register(worker_id), response.text

    @rule(target=leases, worker_id=st.sampled_from(WORKER_IDS), max_tasks=st.integers(1, 3))
    def claim(self, worker_id: str, max_tasks: int) -> MultipleResults[Lease]:
        body = {"worker_id": worker_id, "max_tasks": max_tasks, "wait_seconds": 0}
        response = self.api.post("/api/v1/tasks/claim", json=body)
        refusal = self.model.claim_refusal(worker_id)
        if refusal is not None:
            assert response.status_code == refusal, response.text
            return multiple()
        assert response.status_code == 200, response.text
        items = response.json()["tasks"]
        got = [Lease(UUID(i["task_id"]), UUID(i["lease_token"]), worker_id) for i in items]
        self.checks.claimed(x.task_id for x in got)
        self.model.claimed(worker_id, max_tasks, [(x.task_id, x.token) for x in got])
        for item in items:
            task = self.model.tasks[UUID(item["task_id"])]
            spec = task.submission
            shown = tuple(
                item[k]
                for k in ("task_type", "priority", "timeout_seconds", "max_retries", "retry_count")
            )
            assert shown == (
                spec.task_type,
                spec.priority,
                spec.timeout_seconds,
                spec.max_retries,
                task.retry_count,
            ), f"claim shows {task} as {shown}"
        self.checks.touched.update(x.task_id for x in got)
        return multiple(*got)

    @precondition(has_leases)
    @rule(
        worker_id=st.sampled_from(WORKER_IDS),
        held=st.lists(leases, min_size=1, max_size=3, unique_by=task_of),
    )
    def heartbeat(self, worker_id: str, held: list[Lease]) -> None:
        self._heartbeat(worker_id, held)

    def _heartbeat(self, worker_id: str, held: list[Lease]) -> None:
        body = {
            "current_tasks": len(held),
            "leases": [{"task_id": str(x.task_id), "lease_token": str(x.token)} for x in held],
        }
        response = self.api.post(f"/api/v1/workers/{worker_id}/heartbeat", json=body)
        code, renewed, abandon = self.model.heartbeat(
            worker_id, [(x.task_id, x.token) for x in held], len(held)
        )
        assert response.status_code == code, response.text
        if code == 200:
            assert response.json() == {
                "renewed": [str(t) for t in renewed],
                "abandon": [str(t) for t in abandon],
                "abort": [],  # the model never aborts a running task
            }
        self.checks.touched.update(x.task_id for x in held)

    @precondition(has_leases)
    @rule(
        items=st.lists(leases, min_size=1, max_size=2, unique_by=task_of),
        report=st.sampled_from(REPORTS),
    )
    def report(self, items: list[Lease], report: str) -> None:
        """A worker reports with leases handed out so far: some current, some long stale."""
        self._report(report, items)

    @precondition(lambda self: bool(self.model.current_leases()))
    @rule(data=st.data(), report=st.sampled_from(REPORTS))
    def report_a_current_lease(self, data: st.DataObject, report: str) -> None:
        current = self.model.current_leases()
        task_id, token, worker_id = data.draw(st.sampled_from(current), label="current lease")
        self._report(report, [Lease(task_id, token, worker_id)])

    @precondition(lambda self: bool(self.model.stale_leases()))
    @rule(
        data=st.data(),
        report=st.sampled_from((*REPORTS, "heartbeat")),
        worker_id=st.sampled_from(WORKER_IDS),
    )
    def replay_stale_lease(self, data: st.DataObject, report: str, worker_id: str) -> None:
        """A worker that was paused or cut off reports with the token of an earlier claim."""
        self._replay(data, report, worker_id, running=False)

    @precondition(lambda self: bool(self.model.stale_leases(running=True)))
    @rule(
        data=st.data(),
        report=st.sampled_from((*REPORTS, "heartbeat")),
        worker_id=st.sampled_from(WORKER_IDS),
    )
    def replay_stale_lease_of_a_running_task(
        self, data: st.DataObject, report: str, worker_id: str
    ) -> None:
        """The same, while the task runs again under a newer lease."""
        self._replay(data, report, worker_id, running=True)

    def _replay(self, data: st.DataObject, report: str, worker_id: str, running: bool) -> None:
        stale = [(t.ref, t.task_id, token) for t, token in self.model.stale_leases(running)]
        ref, task_id, token = data.draw(st.sampled_from(stale), label="stale lease")
        before = self.broker.task_row(task_id)
        if report == "heartbeat":
            self._heartbeat(worker_id, [Lease(task_id, token, worker_id)])
        else:
            assert self._report(report, [Lease(task_id, token, worker_id)]) == 409
        assert self.broker.task_row(task_id) == before, f"a stale token of {ref} changed it"

    def _report(self, report: str, items: list[Lease]) -> int:
        """complete, fail, give up (fail, not retryable) or release; returns the status code."""
        leases = [(x.task_id, x.token) for x in items]
        wire: list[dict[str, object]] = [
            {"task_id": str(task_id), "lease_token": str(token)} for task_id, token in leases
        ]
        if report == "complete":
            results = [f"result-{next(self.serial)}".encode() for _ in items]
            for item, result in zip(wire, results, strict=True):
                item["result"] = b64(result)
            outcome = self.model.complete(
                [(t, token, result) for (t, token), result in zip(leases, results, strict=True)]
            )
        elif report in ("fail", "give up"):
            retryable = report == "fail"
            errors = [f"boom-{next(self.serial)}" for _ in items]
            for item, error in zip(wire, errors, strict=True):
                item.update(error=error, retryable=retryable)
            outcome = self.model.fail(
                [(t, token, e, retryable) for (t, token), e in zip(leases, errors, strict=True)]
            )
        else:
            outcome = self.model.release(leases)
        path = "fail" if report == "give up" else report
        body = {"worker_id": items[0].worker_id, "tasks": wire}
        response = self.api.post(f"/api/v1/tasks/{path}", json=body)
        assert response.status_code == outcome.status_code, f"{report}: {response.text}"
        if outcome.status_code == 200:
            assert response.json() == {
                "accepted": [str(t) for t in outcome.accepted],
                "rejected": [str(t) for t in outcome.rejected],
            }
        else:
            assert "error" in response.json()
        if report == "complete":
            self.checks.completed(outcome.accepted)
        self.checks.touched.update(task_id for task_id, _ in leases)
        return int(response.status_code)

    # -- time and the leader ---------------------------------------------------------------

    @rule()
    def a_minute_passes(self) -> None:
        """A minute in a healthy cluster: the online workers heartbeat the leases they hold,
        the leader sweeps, idle workers claim a task. (Hypothesis draws the first rule in its
        order — no target, fewest arguments — most often; this is the step worth drawing most,
        as it moves tasks through their whole life cycle.)"""
        self.broker.travel(QUANTUM)
        self.model.advance(QUANTUM)
        online = [w.worker_id for w in self.model.workers.values() if w.known and w.online]
        held: dict[str, list[Lease]] = {worker_id: [] for worker_id in online}
        for task_id, token, worker_id in self.model.current_leases():
            if worker_id in held:
                held[worker_id].append(Lease(task_id, token, worker_id))
        for worker_id in online:
            self._heartbeat(worker_id, held[worker_id])
        for sweep in SWEEPS:
            self.leader_sweeps(sweep)
        for worker_id in online:
            if not held[worker_id]:
                self.claim(worker_id, 1)

    @rule(seconds=st.sampled_from(TIME_STEPS), workers_beat=st.booleans(), swept=st.booleans())
    def time_passes(self, seconds: int, workers_beat: bool, swept: bool) -> None:
        """Time passes. At its end, with workers_beat, the online workers say they are alive
        (liveness only: leases are renewed by the heartbeat rule, or expire); with swept, the
        leader has run its sweeps."""
        self.broker.travel(seconds)
        self.model.advance(seconds)
        if workers_beat:
            for worker in self.model.workers.values():
                if worker.known and worker.online:
                    self._heartbeat(worker.worker_id, [])
        if swept:
            for sweep in SWEEPS:
                self.leader_sweeps(sweep)

    @rule(sweep=st.sampled_from(SWEEPS))
    def leader_sweeps(self, sweep: str) -> None:
        got: tuple[int, ...]
        expected: tuple[int, ...]
        if sweep == "rescuer":
            rescued = self.broker.sweeps.rescue()
            got, expected = (rescued.retried, rescued.dead_lettered), self.model.rescue()
        elif sweep == "reaper":
            got, expected = (self.broker.sweeps.reap().marked_offline,), (self.model.reap(),)
        else:
            cleaned = self.broker.sweeps.clean()
            got, expected = (cleaned.tasks_deleted, cleaned.workers_deleted), self.model.clean()
        assert got == expected, f"{sweep} counted {got}; the life cycle says {expected}"


@pytest.fixture(scope="module")
def broker(pg: EmbeddedPostgres) -> Iterator[Broker]:
    name = create_database(pg)
    try:
        with running_broker(pg.conninfo(name), name, pg.url(name), LIMITS) as running:
            yield running
    finally:
        drop_database(pg, name)


# Passing takes about a minute; a failure adds up to Hypothesis's five minutes of shrinking.
@pytest.mark.timeout(600)
def test_the_broker_follows_the_task_life_cycle(broker: Broker) -> None:
    class OnThisBroker(LifecycleMachine):
        def __init__(self) -> None:
            super().__init__(broker)

    run_state_machine_as_test(OnThisBroker, settings=settings.get_profile("tq-model"))
