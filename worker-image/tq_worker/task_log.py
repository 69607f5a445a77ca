"""One log line per finished attempt: task id, type, outcome, duration and attempt number.

    INFO tq_worker.task: task 0193… resize completed in 0.412s (attempt 1/4)
    WARNING tq_worker.task: task 0193… resize failed in 0.020s (attempt 2/4, will retry):
        ValueError: image too large

The same facts travel as `extra=` fields (task_id, task_type, outcome, duration_ms, attempt,
max_attempts, will_retry, error), so `--log-format json` gives each its own key. The one thing
not to break: exactly one line per attempt this worker ran or gave up, whatever ended it.
"""

from __future__ import annotations

import logging
import time

from tq_client.protocol import CompletedTask, FailedTask
from tq_worker.ledger import Held, StopReason

log = logging.getLogger("tq_worker.task")


def outcome_name(held: Held, outcome: CompletedTask | FailedTask | None) -> str:
    """completed, failed, aborted (asked to stop), or (nothing reported) abandoned /
    cancelled."""
    if isinstance(outcome, CompletedTask):
        return "completed"
    if held.stop_reason is StopReason.ABORTED:
        return "aborted"
    if isinstance(outcome, FailedTask):
        return "failed"
    return "abandoned" if held.stop_reason is StopReason.ABANDONED else "cancelled"


def will_retry(held: Held, outcome: CompletedTask | FailedTask | None) -> bool:
    """What the broker will do with a failure, as far as the worker can tell."""
    if not isinstance(outcome, FailedTask) or not outcome.retryable:
        return False
    return held.task.retry_count < held.task.max_retries


def log_finished(held: Held, outcome: CompletedTask | FailedTask | None) -> None:
    task = held.task
    name = outcome_name(held, outcome)
    duration = 0.0 if held.started_at is None else time.monotonic() - held.started_at
    attempt, attempts = task.retry_count + 1, task.max_retries + 1
    retry = will_retry(held, outcome)
    fields: dict[str, object] = {
        "task_id": str(task.task_id),
        "task_type": task.task_type,
        "outcome": name,
        "duration_ms": round(duration * 1000, 1),
        "attempt": attempt,
        "max_attempts": attempts,
    }
    detail = f"attempt {attempt}/{attempts}"
    error = ""
    if isinstance(outcome, FailedTask):
        fields["will_retry"] = retry
        fields["error"] = outcome.error.split("\n", 1)[0]
        detail += ", will retry" if retry else ", no retry"
        error = f": {fields['error']}"
    level = logging.INFO if name == "completed" else logging.WARNING
    log.log(
        level,
        "task %s %s %s in %.3fs (%s)%s",
        task.task_id,
        task.task_type,
        name,
        duration,
        detail,
        error,
        extra=fields,
    )
