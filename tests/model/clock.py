"""The virtual clock of the model test: its grain, the broker's time limits, and readiness.

Time in an example is virtual: it counts seconds since the example began and moves only when
the machine says so, by shifting every stored timestamp back (harness.py). The database still
sees a little real time pass on top: the real time the example has taken so far.

The one thing not to break: every instant and every time limit is a multiple of QUANTUM, and the
real time one example takes stays far below QUANTUM. That makes every time decision exact: in
the model a limit has passed when `elapsed >= limit`, and the database, which sees the same
elapsed time plus a little real time, agrees on both sides of every limit. The one exception is
the jitter of a retry's backoff, modelled as a window: certainly not claimable before its lower
end, certainly claimable from its upper end, either in between.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

QUANTUM = 60  # seconds; the grain of the virtual clock and of every limit
STATS_WINDOW_SECONDS = 3600  # "last hour" of GET /api/v1/stats
MAX_RETRIES_MODELLED = 3


@dataclass(frozen=True)
class Limits:
    """The broker's time limits for the test, each a multiple of QUANTUM."""

    lease_ttl_seconds: int = 3 * QUANTUM
    deadline_grace_seconds: int = QUANTUM
    backoff_base_seconds: int = 2 * QUANTUM
    backoff_cap_seconds: int = 6 * QUANTUM
    worker_silent_seconds: int = 5 * QUANTUM
    retention_seconds: int = 30 * QUANTUM

    def __post_init__(self) -> None:
        limits = (
            self.lease_ttl_seconds,
            self.deadline_grace_seconds,
            self.worker_silent_seconds,
            self.retention_seconds,
            STATS_WINDOW_SECONDS,
        )
        if any(limit % QUANTUM for limit in limits):
            raise ValueError(f"every limit must be a multiple of {QUANTUM}s: {limits}")
        # Both ends of every jitter window, [backoff/2, backoff], must fall on the grain too.
        if any(self.backoff(n) % (2 * QUANTUM) for n in range(MAX_RETRIES_MODELLED + 1)):
            raise ValueError(f"every backoff must be a multiple of {2 * QUANTUM}s")

    def backoff(self, retry_count: int) -> int:
        """The full backoff after a failed attempt; the broker waits between half and all of it."""
        return min(self.backoff_cap_seconds, self.backoff_base_seconds << retry_count)


class Readiness(enum.Enum):
    READY = "ready"
    NOT_YET = "not yet"
    EITHER = "either"  # inside a jitter window: both answers are right


@dataclass(frozen=True)
class Window:
    """When a waiting task becomes claimable, in virtual seconds."""

    earliest: int  # before this it certainly is not claimable
    latest: int  # from this on it certainly is

    def at(self, now: int) -> Readiness:
        if now >= self.latest:
            return Readiness.READY
        if now < self.earliest:
            return Readiness.NOT_YET
        return Readiness.EITHER
