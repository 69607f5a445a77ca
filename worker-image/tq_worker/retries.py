"""Per-task-type retry rules: which exceptions are worth another attempt, and how long to wait.

The broker owns the retry itself (`tq_failed_attempt`: retry while retries are left, else
dead-letter); a worker only adds two facts to a failure report — `retryable: false` when the
handler's exception is not one its type retries on, and `retry_delay_seconds` when its type
has its own backoff. The one thing not to break: `PermanentFailure` is never retried, and a
type without `retry_on` retries every other exception, as before these options existed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tq_worker.backoff import backoff_delay

# The longest retry delay a worker asks for (the broker's backoff cap is 300 s by default).
RETRY_DELAY_MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class RetryBackoff:
    """Wait min(cap, base * 2^retry_count) seconds before a retry, with equal jitter
    (between half and all of it), so that tasks that failed together do not retry together."""

    base_seconds: float
    cap_seconds: float

    def __post_init__(self) -> None:
        if not 0 <= self.base_seconds <= self.cap_seconds <= RETRY_DELAY_MAX_SECONDS:
            raise ValueError(
                "backoff needs 0 <= base_seconds <= cap_seconds <= "
                f"{RETRY_DELAY_MAX_SECONDS:g}, got ({self.base_seconds}, {self.cap_seconds})"
            )

    def delay(self, retry_count: int, jitter: Callable[[], float] | None = None) -> float:
        """Seconds before the retry that follows a failure of attempt `retry_count + 1`."""
        draw = jitter() if jitter is not None else random.uniform(0.5, 1.0)
        return round(backoff_delay(retry_count + 1, self.base_seconds, self.cap_seconds, draw), 3)


def backoff_of(value: RetryBackoff | tuple[float, float] | None) -> RetryBackoff | None:
    """`backoff=` as given to `@worker.task`: a RetryBackoff, or a (base, cap) pair."""
    if value is None or isinstance(value, RetryBackoff):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        base, cap = value
        if all(isinstance(part, (int, float)) and not isinstance(part, bool) for part in value):
            return RetryBackoff(float(base), float(cap))
    raise TypeError(f"backoff takes RetryBackoff(base, cap) or a (base, cap) pair, got {value!r}")


def is_retryable(
    exc: BaseException,
    retry_on: tuple[type[BaseException], ...] | None,
    permanent: type[BaseException],
) -> bool:
    """False for `permanent` (PermanentFailure) and, with `retry_on`, for anything else."""
    if isinstance(exc, permanent):
        return False
    return retry_on is None or isinstance(exc, retry_on)
