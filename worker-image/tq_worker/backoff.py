"""Capped exponential backoff with jitter, for retrying a broker that is down or busy.

The one thing not to break: the delay never exceeds `cap_seconds`, however many failures in a
row, so a worker comes back within one cap of the broker coming back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

BACKOFF_BASE_SECONDS_DEFAULT = 0.1
BACKOFF_CAP_SECONDS_DEFAULT = 10.0


def backoff_delay(
    failures: int,
    base_seconds: float = BACKOFF_BASE_SECONDS_DEFAULT,
    cap_seconds: float = BACKOFF_CAP_SECONDS_DEFAULT,
    jitter: float = 1.0,
) -> float:
    """Delay after `failures` consecutive failures (>= 1): min(cap, base * 2^(failures-1)),
    scaled by `jitter` in [0.5, 1] ("equal jitter": never less than half, spreads the herd)."""
    if failures < 1:
        return 0.0
    exponent = min(failures - 1, 62)  # 2**62 * base is past any cap; avoids float overflow
    return min(cap_seconds, base_seconds * 2.0**exponent) * min(1.0, max(0.5, jitter))


@dataclass
class Backoff:
    """Counts consecutive failures; `next_delay()` after a failure, `reset()` after a success."""

    base_seconds: float = BACKOFF_BASE_SECONDS_DEFAULT
    cap_seconds: float = BACKOFF_CAP_SECONDS_DEFAULT
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0.5, 1.0))
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        return backoff_delay(self.failures, self.base_seconds, self.cap_seconds, self.jitter())

    def reset(self) -> None:
        self.failures = 0
