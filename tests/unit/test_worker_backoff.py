"""Capped exponential backoff with equal jitter."""

from __future__ import annotations

import pytest

from tq_worker.backoff import Backoff, backoff_delay


def test_delay_doubles_from_the_base_until_the_cap() -> None:
    delays = [backoff_delay(n, base_seconds=0.1, cap_seconds=1.0) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_no_failure_means_no_delay_and_huge_counts_stay_at_the_cap() -> None:
    assert backoff_delay(0) == 0.0
    assert backoff_delay(10_000, base_seconds=0.1, cap_seconds=10.0) == 10.0


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.5), (0.5, 0.5), (0.75, 0.75), (2.0, 1.0)])
def test_jitter_keeps_at_least_half_and_at_most_all_of_the_delay(
    jitter: float, factor: float
) -> None:
    assert backoff_delay(3, base_seconds=1.0, cap_seconds=100.0, jitter=jitter) == 4.0 * factor


def test_backoff_counts_failures_and_starts_over_after_a_success() -> None:
    backoff = Backoff(base_seconds=1.0, cap_seconds=5.0, jitter=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_default_jitter_stays_within_bounds() -> None:
    backoff = Backoff(base_seconds=1.0, cap_seconds=1.0)
    assert all(0.5 <= backoff.next_delay() <= 1.0 for _ in range(200))
