"""The checker must see each kind of violation: a checker that passes every history proves
nothing. Each case starts from one clean, hand-written history and breaks one thing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from ..support.audit import Transition
from ..support.checker import Report, StoredTask, check
from ..support.history import Op, Run

T0 = 1_800_000_000.0
TASK = "0193a3f0-0000-7000-8000-000000000001"
LEASE = "0193a3f0-0000-7000-8000-0000000000aa"


@dataclass
class Story:
    """One task submitted, claimed, run and completed, as each witness saw it."""

    ops: list[Op]
    tasks: dict[str, StoredTask]
    transitions: dict[str, list[Transition]]
    runs: list[Run]
    bound: float = 10.0
    more_rows: list[StoredTask] = field(default_factory=list)  # a second row of a key

    def violations(self) -> list[str]:
        return self.report().violations

    graceful_stops: dict[int, float] = field(default_factory=dict)

    def report(self) -> Report:
        tasks = [*self.tasks.values(), *self.more_rows]
        return check(self.ops, tasks, self.transitions, self.runs, self.bound, self.graceful_stops)


def clean_story() -> Story:
    def step(
        old: str | None, new: str, at: float, *, lease: bool = False, result: bool = False
    ) -> Transition:
        return Transition(
            TASK, old, new, 0, LEASE if lease else None, b"run-1" if result else None, T0 + at
        )

    return Story(
        ops=[
            Op("submitter-0", "invoke", "submit", "k1", T0),
            Op("submitter-0", "ok", "submit", "k1", T0 + 0.01, TASK),
        ],
        tasks={"k1": StoredTask(TASK, "k1", "completed", 0, 1, b"run-1")},
        transitions={
            TASK: [
                step(None, "pending", 0.005),
                step("pending", "in_progress", 0.1, lease=True),
                step("in_progress", "completed", 0.3, result=True),
            ]
        },
        runs=[Run("k1", "run-1", 4242, T0 + 0.15, "end")],
    )


def lose_the_task(s: Story) -> None:
    s.tasks.clear()
    s.transitions.clear()


def acknowledge_another_id(s: Story) -> None:
    s.ops.append(Op("submitter-1", "ok", "submit", "k1", T0 + 1, "some-other-task"))


def store_a_certain_failure(s: Story) -> None:
    s.ops[1] = replace(s.ops[1], type="fail", task_id=None, detail="422")


def store_a_task_nobody_submitted(s: Story) -> None:
    s.tasks["stray"] = replace(s.tasks["k1"], key="stray", task_id="another")
    s.transitions["another"] = s.transitions[TASK]


def leave_it_pending(s: Story) -> None:
    s.tasks["k1"] = replace(s.tasks["k1"], status="pending", result=None)
    s.transitions[TASK] = s.transitions[TASK][:1]


def finish_it_twice(s: Story) -> None:
    trail = s.transitions[TASK]
    trail.append(replace(trail[-1], old_status="completed", new_status="dead_letter"))


def complete_from_pending(s: Story) -> None:
    trail = s.transitions[TASK]
    s.transitions[TASK] = [trail[0], replace(trail[2], old_status="pending")]


def claim_too_often(s: Story) -> None:
    trail = s.transitions[TASK]
    again = [
        replace(trail[1], old_status="in_progress", new_status="failed", at=T0 + 0.2),
        replace(trail[1], old_status="failed", at=T0 + 0.21),
        replace(trail[1], old_status="in_progress", new_status="failed", at=T0 + 0.22),
        replace(trail[1], old_status="failed", at=T0 + 0.23),
    ]
    s.transitions[TASK] = [*trail[:2], *again, trail[2]]


def dead_letter_early(s: Story) -> None:
    s.tasks["k1"] = replace(s.tasks["k1"], status="dead_letter", max_retries=3, result=None)
    trail = s.transitions[TASK]
    trail[-1] = replace(trail[-1], new_status="dead_letter", result=None)


def accept_two_results(s: Story) -> None:
    trail = s.transitions[TASK]
    trail.insert(2, replace(trail[2], at=T0 + 0.25))
    trail[3] = replace(trail[3], old_status="completed")


def accept_a_result_no_run_made(s: Story) -> None:
    s.runs[0] = replace(s.runs[0], outcome="none")


def claim_after_a_cancel(s: Story) -> None:
    s.ops.append(Op("canceller", "ok", "cancel", "k1", T0 + 0.05, TASK, "204"))


def store_a_key_twice(s: Story) -> None:
    s.more_rows.append(replace(s.tasks["k1"], task_id="another"))


def delete_a_task(s: Story) -> None:
    del s.tasks["k1"]
    s.ops[1] = replace(s.ops[1], type="info", task_id=None)  # absent would be fine, gone is not


def change_after_the_end(s: Story) -> None:
    trail = s.transitions[TASK]
    trail.append(replace(trail[-1], old_status="completed", new_status="in_progress"))


def run_it_twice(s: Story) -> None:
    s.runs.append(Run("k1", "run-2", 4243, T0 + 0.16, "end"))


def run_a_task_nobody_stored(s: Story) -> None:
    s.runs.append(Run("k9", "run-9", 4243, T0 + 0.16, "end"))


def miscount_retries(s: Story) -> None:
    s.tasks["k1"] = replace(s.tasks["k1"], retry_count=1)


def accept_a_stale_run(s: Story) -> None:
    """run-1 started under the first claim; the lease was lost and the task claimed again, and
    run-1's late result was accepted instead of the second claim's."""
    s.tasks["k1"] = replace(s.tasks["k1"], retry_count=1)
    trail = s.transitions[TASK]
    claim, done = trail[1], trail[2]
    s.transitions[TASK] = [
        trail[0],
        claim,
        replace(claim, old_status="in_progress", new_status="failed", retry_count=1, at=T0 + 3),
        replace(claim, old_status="failed", retry_count=1, at=T0 + 4),
        replace(done, retry_count=1, at=T0 + 5),
    ]
    s.runs.append(Run("k1", "run-2", 4243, T0 + 4.1, "none"))


def burn_an_attempt_in_a_graceful_stop(s: Story) -> None:
    """The worker that held the first claim got SIGTERM, yet its lease expired."""
    s.graceful_stops = {4242: T0 + 1}
    s.tasks["k1"] = replace(s.tasks["k1"], retry_count=1)
    trail = s.transitions[TASK]
    claim, done = trail[1], trail[2]
    s.transitions[TASK] = [
        trail[0],
        replace(claim, worker_id="worker-host-4242-abcdef"),
        replace(
            claim,
            old_status="in_progress",
            new_status="failed",
            retry_count=1,
            at=T0 + 3,
            worker_id="worker-host-4242-abcdef",
            error="lease expired: worker worker-host-4242-abcdef stopped heartbeating",
        ),
        replace(claim, old_status="failed", retry_count=1, at=T0 + 4),
        replace(done, retry_count=1, at=T0 + 5),
    ]
    s.runs[0] = replace(s.runs[0], started_at=T0 + 4.1)


def stop_it_running(s: Story, aborted: bool = False) -> None:
    """The running task ends cancelled (its run cut short), with or without an abort."""
    s.tasks["k1"] = replace(s.tasks["k1"], status="cancelled", result=None)
    trail = s.transitions[TASK]
    trail[-1] = replace(trail[-1], new_status="cancelled", result=None, aborted=aborted)
    s.runs[0] = replace(s.runs[0], outcome="none")


def cancel_it_while_running(s: Story) -> None:
    stop_it_running(s, aborted=False)


def retry_it_after_its_abort(s: Story) -> None:
    """Aborted while running, yet failed with a retry and then completed."""
    s.tasks["k1"] = replace(s.tasks["k1"], retry_count=1)
    trail = s.transitions[TASK]
    claim, done = trail[1], trail[2]
    s.transitions[TASK] = [
        trail[0],
        claim,
        replace(claim, old_status="in_progress", new_status="failed", retry_count=1, aborted=True),
        replace(claim, old_status="failed", retry_count=1, at=T0 + 0.2, aborted=True),
        replace(done, retry_count=1, at=T0 + 0.3, aborted=True),
    ]
    s.runs[0] = replace(s.runs[0], started_at=T0 + 0.25)


def finish_too_late(s: Story) -> None:
    trail = s.transitions[TASK]
    trail[-1] = replace(trail[-1], at=T0 + 60)


BREAKS: dict[str, tuple[Callable[[Story], None], str]] = {
    "lost": (lose_the_task, "lost:"),
    "idempotency": (acknowledge_another_id, "idempotency:"),
    "failed submit stored": (store_a_certain_failure, "phantom: submit k1 certainly failed"),
    "never submitted": (store_a_task_nobody_submitted, "was never submitted"),
    "not terminal": (leave_it_pending, "not terminal"),
    "two terminal states": (finish_it_twice, "2 terminal transitions"),
    "illegal transition": (complete_from_pending, "illegal transition pending -> completed"),
    "too many attempts": (claim_too_often, "too many attempts"),
    "early dead letter": (dead_letter_early, "dead-lettered after 1 of 4 attempts"),
    "two results": (accept_two_results, "2 results accepted"),
    "result without a run": (accept_a_result_no_run_made, "a result no finished run produced"),
    "claim after cancel": (claim_after_a_cancel, "claimed after its 204 cancel"),
    "too slow": (finish_too_late, "slow:"),
    "cancelled while running, no abort": (
        cancel_it_while_running,
        "cancelled while in_progress without an abort on record",
    ),
    "retried after an abort": (retry_it_after_its_abort, "failed after its abort"),
    "key stored twice": (store_a_key_twice, "duplicate: k1"),
    "task deleted": (delete_a_task, "vanished:"),
    "changed after terminal": (change_after_the_end, "changed after its terminal state"),
    "two runs of one claim": (run_it_twice, "too many runs"),
    "run of an unknown task": (run_a_task_nobody_stored, "ran a task that is not stored: k9"),
    "retry_count disagrees": (miscount_retries, "1 attempts of"),
    "stale run's result": (accept_a_stale_run, "the result of a run under an earlier claim"),
    "graceful stop burned an attempt": (
        burn_an_attempt_in_a_graceful_stop,
        "attempt burned by a graceful stop of pid 4242",
    ),
}


def test_a_clean_history_has_no_violations() -> None:
    assert clean_story().violations() == []


@pytest.mark.parametrize("name", BREAKS)
def test_each_broken_guarantee_is_reported(name: str) -> None:
    story = clean_story()
    breaking, expected = BREAKS[name]
    breaking(story)
    violations = story.violations()
    assert any(expected in v for v in violations), violations


def test_a_running_task_that_ends_cancelled_with_an_abort_on_record_is_fine() -> None:
    story = clean_story()
    stop_it_running(story, aborted=True)
    assert story.violations() == []


def test_an_unknown_submit_may_be_absent_or_present_once() -> None:
    absent = clean_story()
    absent.ops[1] = replace(absent.ops[1], type="info", task_id=None)
    lose_the_task(absent)
    absent.runs.clear()
    assert absent.violations() == []

    present = clean_story()
    present.ops[1] = replace(present.ops[1], type="info", task_id=None)
    report = present.report()
    assert report.violations == []
    assert report.summary["submits unknown, present"] == 1
