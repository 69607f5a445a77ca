"""The knobs of the failed-attempt rule, named once.

The rule itself is the SQL function `tq_failed_attempt` (migration 0008): with retries left, a
failed attempt waits min(cap, base * 2^retry_count), with equal jitter, before the task is
claimable again; without, the task is dead-lettered. Workers failing, and the rescuer
finding an expired lease, both go through it.
"""

from __future__ import annotations

BACKOFF_BASE_SECONDS_DEFAULT = 1.0  # the first retry's backoff
BACKOFF_CAP_SECONDS_DEFAULT = 300.0  # the longest
