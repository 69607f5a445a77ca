"""The autoscaling decision over sequences of observations, with an injected clock."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from tq_client.models import QueueDepth
from tq_operator.broker import pending
from tq_operator.scaling import Reason, Scaler, ScalingPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(**overrides: float) -> ScalingPolicy:
    values: dict[str, float] = {
        "min_replicas": 0,
        "max_replicas": 20,
        "target_pending_per_replica": 10,
        "activation_pending": 0,
        "stabilization_seconds": 60,
        "cooldown_seconds": 120,
    }
    values.update(overrides)
    return ScalingPolicy(
        min_replicas=int(values["min_replicas"]),
        max_replicas=int(values["max_replicas"]),
        target_pending_per_replica=int(values["target_pending_per_replica"]),
        activation_pending=int(values["activation_pending"]),
        stabilization_seconds=values["stabilization_seconds"],
        cooldown_seconds=values["cooldown_seconds"],
    )


def replay(
    rules: ScalingPolicy,
    observations: Sequence[tuple[float, int | None]],
    replicas: int = 0,
) -> list[int]:
    """Feed (seconds since start, pending) in order; each decision becomes the next count."""
    clock = FakeClock()
    start = clock.now
    scaler = Scaler(clock)
    counts = []
    for at, seen in observations:
        clock.now = start + at
        replicas = scaler.decide(rules, replicas, seen).desired
        counts.append(replicas)
    return counts


def test_pending_counts_ready_and_in_progress_but_not_scheduled() -> None:
    depth = QueueDepth(task_types=["a"], ready=7, scheduled=100, in_progress=5)
    assert pending(depth) == 12


def test_scales_up_at_once_to_ceil_of_pending_over_target() -> None:
    assert replay(policy(), [(0, 0), (10, 500)], replicas=1) == [1, 20]
    assert replay(policy(max_replicas=100), [(0, 0), (10, 501)], replicas=1) == [1, 51]
    assert replay(policy(), [(0, 0), (10, 11)], replicas=1) == [1, 2]


def test_recommendation_is_clamped_to_min_and_max() -> None:
    assert replay(policy(min_replicas=3), [(0, 1)], replicas=3) == [3]
    assert replay(policy(max_replicas=4), [(0, 10_000)], replicas=1) == [4]


def test_scale_down_waits_for_the_stabilization_window() -> None:
    counts = replay(
        policy(stabilization_seconds=60),
        [(0, 100), (10, 20), (30, 20), (59, 20), (71, 20)],
        replicas=10,
    )
    # Recommendation 10 at t=0 keeps 10 until it leaves the window (t > 60).
    assert counts == [10, 10, 10, 10, 2]


def test_scale_down_goes_to_the_highest_recommendation_in_the_window() -> None:
    counts = replay(
        policy(stabilization_seconds=30),
        [(0, 100), (10, 60), (20, 30), (35, 10), (45, 10), (55, 10)],
        replicas=10,
    )
    # At t=35 the window (5..35] holds 6, 3, 1: down to 6; then 3; then 1.
    assert counts == [10, 10, 10, 6, 3, 1]


def test_a_burst_inside_the_window_holds_the_count_at_its_recommendation() -> None:
    counts = replay(
        policy(stabilization_seconds=30),
        [(0, 80), (10, 0), (20, 0), (30, 50), (45, 0), (61, 0)],
        replicas=8,
    )
    # At 45 the window (15..45] holds 1, 5, 1: down to 5, not to 1; at 61 only 1s remain.
    assert counts == [8, 8, 8, 8, 5, 1]


def test_scale_up_ignores_stale_high_recommendations() -> None:
    counts = replay(
        policy(stabilization_seconds=300),
        [(0, 100), (400, 30), (410, 40)],
        replicas=10,
    )
    # At 410 the window holds 3 and 4: up to 4 (not back to the old 10).
    assert counts == [10, 3, 4]


def test_zero_to_one_only_above_the_activation_threshold() -> None:
    counts = replay(
        policy(activation_pending=5),
        [(0, 0), (10, 3), (20, 5), (30, 6)],
        replicas=0,
    )
    assert counts == [0, 0, 0, 1]


def test_activation_from_zero_goes_straight_to_the_recommendation() -> None:
    assert replay(policy(), [(0, 0), (1, 500)], replicas=0) == [0, 20]


def test_one_to_zero_only_after_the_cooldown_without_work() -> None:
    counts = replay(
        policy(cooldown_seconds=120, stabilization_seconds=0),
        [(0, 5), (60, 0), (119, 0), (121, 0)],
        replicas=1,
    )
    assert counts == [1, 1, 1, 0]


def test_any_work_restarts_the_cooldown() -> None:
    counts = replay(
        policy(cooldown_seconds=100, stabilization_seconds=0),
        [(0, 5), (90, 1), (150, 0), (189, 0), (191, 0)],
        replicas=1,
    )
    assert counts == [1, 1, 1, 1, 0]


def test_below_activation_work_keeps_a_running_pod() -> None:
    counts = replay(
        policy(activation_pending=10, cooldown_seconds=10, stabilization_seconds=0),
        [(0, 3), (100, 3), (200, 3)],
        replicas=1,
    )
    assert counts == [1, 1, 1]


def test_scaling_to_zero_skips_the_stabilization_window() -> None:
    counts = replay(
        policy(cooldown_seconds=30, stabilization_seconds=300),
        [(0, 100), (10, 0), (41, 0)],
        replicas=10,
    )
    assert counts == [10, 10, 0]


def test_min_replicas_never_scales_to_zero() -> None:
    counts = replay(
        policy(min_replicas=2, cooldown_seconds=0, stabilization_seconds=0),
        [(0, 0), (1000, 0)],
        replicas=2,
    )
    assert counts == [2, 2]


def test_an_unreachable_broker_holds_the_count_and_never_scales_to_zero() -> None:
    counts = replay(
        policy(cooldown_seconds=10, stabilization_seconds=0),
        [(0, 30), (5, None), (500, None), (1000, None)],
        replicas=3,
    )
    assert counts == [3, 3, 3, 3]


def test_the_failed_observation_says_why_it_held() -> None:
    scaler = Scaler(FakeClock())
    decision = scaler.decide(policy(), 4, None)
    assert decision.desired == 4
    assert decision.reason is Reason.BROKER_UNREACHABLE
    assert not decision.changed


def test_a_fresh_scaler_does_not_scale_down_before_a_window_passes() -> None:
    # An operator restart: history is gone, the pool runs 5 pods, nothing is pending.
    counts = replay(
        policy(stabilization_seconds=60, cooldown_seconds=600),
        [(0, 0), (30, 0), (61, 0)],
        replicas=5,
    )
    assert counts == [5, 5, 1]


def test_a_lowered_max_applies_at_once() -> None:
    clock = FakeClock()
    scaler = Scaler(clock)
    assert scaler.decide(policy(max_replicas=10), 10, 100).desired == 10
    clock.now += 1
    decision = scaler.decide(policy(max_replicas=4), 10, 100)
    assert decision.desired == 4
    assert decision.reason is Reason.SCALE_DOWN


def test_a_raised_min_applies_at_once_even_at_zero() -> None:
    clock = FakeClock()
    scaler = Scaler(clock)
    assert scaler.decide(policy(), 0, 0).desired == 0
    clock.now += 1
    assert scaler.decide(policy(min_replicas=2), 0, 0).desired == 2


def test_reasons_follow_the_rules() -> None:
    clock = FakeClock()
    scaler = Scaler(clock)
    rules = policy(stabilization_seconds=10, cooldown_seconds=20)
    assert scaler.decide(rules, 0, 0).reason is Reason.BELOW_ACTIVATION
    clock.now += 1
    assert scaler.decide(rules, 0, 25).reason is Reason.ACTIVATE
    clock.now += 1
    assert scaler.decide(rules, 3, 80).reason is Reason.SCALE_UP
    clock.now += 1
    assert scaler.decide(rules, 8, 80).reason is Reason.STEADY
    clock.now += 1
    assert scaler.decide(rules, 8, 10).reason is Reason.STABILIZING
    clock.now += 11
    assert scaler.decide(rules, 8, 0).reason is Reason.SCALE_DOWN
    clock.now += 1
    assert scaler.decide(rules, 1, 0).reason is Reason.COOLING_DOWN
    clock.now += 30
    assert scaler.decide(rules, 1, 0).reason is Reason.SCALE_TO_ZERO


@given(
    observations=st.lists(
        st.tuples(st.floats(0, 50), st.one_of(st.none(), st.integers(0, 5000))), max_size=40
    ),
    start=st.integers(0, 20),
)
def test_decisions_stay_within_bounds_and_errors_never_lower_the_count(
    observations: list[tuple[float, int | None]], start: int
) -> None:
    rules = policy(min_replicas=1, max_replicas=20, stabilization_seconds=30)
    clock = FakeClock()
    scaler = Scaler(clock)
    replicas = max(1, min(20, start))
    for step, seen in observations:
        clock.now += step
        decision = scaler.decide(rules, replicas, seen)
        if seen is None:
            assert decision.desired == replicas
        else:
            assert 1 <= decision.desired <= 20
            assert decision.desired >= min(replicas, -(-seen // 10))  # never below the need
        replicas = decision.desired
