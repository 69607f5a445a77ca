"""Waiting for a task to finish: `client.wait(task_id, timeout=…)`, shared by both clients.

The broker long-polls: `GET /api/v1/tasks/{id}?wait=<s>` answers as soon as the task is
terminal (completed, dead_letter, cancelled), or after at most 60 s with the task as it is.
A wait longer than that is a loop of such calls; `WaitPlan` holds that loop's arithmetic so
the sync and async clients only differ in how they sleep and send. The one thing not to
break: a wait never outlives its timeout by more than one request's round trip, and never
spins — if a broker answers early without the task being terminal (one that predates
`?wait=`), the next call waits for the rest of a second first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from uuid import UUID

from tq_client.calls import Call, get_call
from tq_client.models import TERMINAL_STATUSES, WAIT_SECONDS_MAX, TaskDetail

# An early non-terminal answer is followed by a pause until this long after the call began.
MIN_CALL_SECONDS = 1.0
# A broker that stops answering mid-wait (restart, failover) is asked again after this long.
RETRY_SECONDS = 1.0


class WaitTimeout(TimeoutError):
    """The task was not terminal within the timeout; `task` is how it was last seen."""

    def __init__(self, task: TaskDetail, timeout: float) -> None:
        super().__init__(f"task {task.task_id} is still {task.status.value} after {timeout:g}s")
        self.task = task
        self.timeout = timeout


class WaitPlan:
    """The loop of long-poll calls for one wait. `timeout=None` waits as long as it takes."""

    def __init__(
        self,
        task_id: UUID | str,
        timeout: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout is not None and (math.isnan(timeout) or timeout < 0):
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        self.task_id = task_id
        self.timeout = timeout
        self._clock = clock
        self._deadline = None if timeout is None else clock() + timeout
        self._call_started = clock()
        self.answered = False  # a first answer came: later transport errors are retried

    def remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def next_call(self) -> Call[TaskDetail]:
        remaining = self.remaining()
        seconds = WAIT_SECONDS_MAX if remaining is None else min(remaining, WAIT_SECONDS_MAX)
        self._call_started = self._clock()
        return get_call(self.task_id, seconds)

    def finished(self, task: TaskDetail) -> bool:
        """True when `task` is the answer; raises WaitTimeout when time is up first."""
        self.answered = True
        if task.status in TERMINAL_STATUSES:
            return True
        if self.remaining() == 0.0:
            assert self.timeout is not None
            raise WaitTimeout(task, self.timeout)
        return False

    def pause(self) -> float:
        """Seconds to sleep before the next call (0 after a call that held the full time)."""
        early = MIN_CALL_SECONDS - (self._clock() - self._call_started)
        remaining = self.remaining()
        pause = max(0.0, early)
        return pause if remaining is None else min(pause, remaining)

    def retry_pause(self) -> float | None:
        """After a transport error or 503 mid-wait: seconds to sleep, or None to give up."""
        if not self.answered:
            return None
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            return None
        return RETRY_SECONDS if remaining is None else min(RETRY_SECONDS, remaining)
