"""The token bucket with an injected clock, and the bound it guarantees."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tq_broker.ratelimit import TokenBucket, grant_size, retry_after


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
