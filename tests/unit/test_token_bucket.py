"""The token bucket with an injected clock, and the bound it guarantees."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tq_broker.ratelimit import HeartbeatBudget, TokenBucket, grant_size, retry_after


def test_a_full_bucket_admits_exactly_the_burst_at_once_then_refuses() -> None:
    bucket = TokenBucket(rate=100, burst=200, tokens=200, updated=0.0)
    admitted = [bucket.take(1, now=0.0) for _ in range(201)]
    assert admitted.count(True) == 200
    assert admitted[-1] is False


def test_retry_after_says_when_the_next_request_succeeds() -> None:
    bucket = TokenBucket(rate=0.5, burst=1, tokens=1, updated=0.0)
    assert bucket.take(1, now=0.0)
    assert not bucket.take(1, now=0.0)
    wait = retry_after(bucket.seconds_until(1))
    assert wait == 2
    assert not bucket.take(1, now=wait - 0.01)
    assert bucket.take(1, now=wait)


def test_retry_after_is_a_whole_number_of_seconds_at_least_one() -> None:
    assert retry_after(0.0) == 1
    assert retry_after(0.001) == 1
    assert retry_after(1.2) == 2


def test_refill_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=100, burst=200, tokens=0, updated=0.0)
    bucket.refill(now=1000.0)
    assert bucket.tokens == 200


def test_buckets_of_different_keys_are_isolated() -> None:
    a = TokenBucket(rate=1, burst=2, tokens=2, updated=0.0)
    b = TokenBucket(rate=1, burst=2, tokens=2, updated=0.0)
    assert [a.take(1, 0.0) for _ in range(3)] == [True, True, False]
    assert [b.take(1, 0.0) for _ in range(2)] == [True, True]


def test_grants_are_a_tenth_of_a_second_of_rate_and_never_zero() -> None:
    assert grant_size(100, 200) == 10
    assert grant_size(1, 2) == 1
    assert grant_size(100_000, 200_000) == 10


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    burst=st.integers(min_value=1, max_value=500),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=400),
)
def test_admitted_requests_in_any_window_stay_within_burst_plus_rate_times_window(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst, tokens=burst, updated=0.0)
    now, admitted_at = 0.0, []
    for gap in gaps:
        now += gap
        if bucket.take(1, now):
            admitted_at.append(now)
    for i, start in enumerate(admitted_at):
        for j in range(i, len(admitted_at)):
            window = admitted_at[j] - start
            assert j - i + 1 <= burst + rate * window + 1e-6


def test_heartbeat_budget_is_per_worker_and_refills_with_time() -> None:
    now = [0.0]
    budget = HeartbeatBudget(
        lease_ttl_seconds=30, heartbeat_interval_seconds=5, burst=10, clock=lambda: now[0]
    )
    assert all(budget.admit("w1").admitted for _ in range(10))
    refused = budget.admit("w1")
    assert not refused.admitted and refused.retry_after_seconds >= 1
    assert budget.admit("w2").admitted, "one worker's beats do not spend another's budget"
    now[0] += 30 / 10  # one beat's worth of refill
    assert budget.admit("w1").admitted
    assert not budget.admit("w1").admitted


def test_heartbeat_budget_never_refills_slower_than_thrice_the_asked_rate() -> None:
    budget = HeartbeatBudget(lease_ttl_seconds=30, heartbeat_interval_seconds=0.2, burst=10)
    assert budget.rate == 15.0


def test_heartbeat_budget_forgets_idle_workers_before_growing_past_its_bound() -> None:
    now = [0.0]
    budget = HeartbeatBudget(30, 5, burst=2, workers_max=3, clock=lambda: now[0])
    for worker in ("a", "b", "c"):
        budget.admit(worker)
    now[0] += 100  # all three buckets are full again
    assert budget.admit("d").admitted
    assert len(budget._buckets) == 1
