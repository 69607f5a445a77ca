"""The autoscaling decision: queue depth observations in, a replica count out.

Pure: no I/O, and time comes from an injected clock, so a sequence of observations can be
replayed in a unit test. The rules (KEDA's, which users already know):

* recommendation = clamp(ceil(pending / targetPendingPerReplica), min, max);
* scale up at once; scale down only to the highest recommendation of the last
  `scaleDownStabilizationSeconds` (so a dip between two bursts does not kill pods);
* 0 -> 1 only when pending > activationPending;
* 1 -> 0 only after `cooldownSeconds` in which no poll saw any work (pending == 0); this step
  skips the stabilization window, as KEDA's does;
* a failed observation (broker unreachable) holds the current count: never zero on an error.

The one thing not to break: an observation that could not be made (`pending is None`) must
never lower the replica count.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    SCALE_UP = "ScaleUp"
    ACTIVATE = "Activate"  # 0 -> n
    SCALE_DOWN = "ScaleDown"
    SCALE_TO_ZERO = "ScaleToZero"
    STEADY = "Steady"
    STABILIZING = "Stabilizing"  # lower recommendation, held by the window
    COOLING_DOWN = "CoolingDown"  # no work, waiting out the cooldown before zero
    BELOW_ACTIVATION = "BelowActivation"  # at zero, pending <= activationPending
    BROKER_UNREACHABLE = "BrokerUnreachable"


@dataclass(frozen=True)
class ScalingPolicy:
    min_replicas: int
    max_replicas: int
    target_pending_per_replica: int
    activation_pending: int = 0
    stabilization_seconds: float = 300.0
    cooldown_seconds: float = 300.0

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))

    def raw_recommendation(self, pending: int) -> int:
        return self.clamp(math.ceil(max(pending, 0) / self.target_pending_per_replica))


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    reason: Reason
    recommendation: int | None  # None when nothing could be observed

    @property
    def changed(self) -> bool:
        return self.desired != self.current


class Scaler:
    """The memory one pool's decisions need: recent recommendations and the last busy time.

    A new Scaler (an operator restart) seeds its window with the current replica count and
    treats "now" as the last busy moment, so a restart never scales down early.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._window: deque[tuple[float, int]] = deque()
        self._last_busy: float | None = None

    def decide(self, policy: ScalingPolicy, current: int, pending: int | None) -> Decision:
        now = self._clock()
        if self._last_busy is None:
            self._last_busy = now
            self._window.append((now, current))
        if pending is None:
            return Decision(current, current, Reason.BROKER_UNREACHABLE, None)
        if pending > 0:
            self._last_busy = now
        recommendation, special = self._recommend(policy, current, pending, now)
        self._remember(now, recommendation, policy.stabilization_seconds)
        if special in (Reason.SCALE_TO_ZERO, Reason.BELOW_ACTIVATION, Reason.ACTIVATE):
            return Decision(recommendation, current, special, recommendation)
        if recommendation > current:
            return Decision(recommendation, current, Reason.SCALE_UP, recommendation)
        # The highest recommendation of the window, but never above a max that just shrank.
        ceiling = policy.clamp(max(r for _, r in self._window))
        if ceiling < current:
            return Decision(ceiling, current, Reason.SCALE_DOWN, recommendation)
        if special is Reason.COOLING_DOWN and current == 1:
            return Decision(current, current, special, recommendation)
        if recommendation < current:
            return Decision(current, current, Reason.STABILIZING, recommendation)
        return Decision(current, current, Reason.STEADY, recommendation)

    def _recommend(
        self, policy: ScalingPolicy, current: int, pending: int, now: float
    ) -> tuple[int, Reason | None]:
        """The recommendation, and the zero-related rule that made it, if one did."""
        raw = policy.raw_recommendation(pending)
        if current == 0:
            if pending > policy.activation_pending:
                return policy.clamp(max(raw, 1)), Reason.ACTIVATE
            if policy.min_replicas > 0:  # min was raised while at zero
                return policy.min_replicas, None
            return 0, Reason.BELOW_ACTIVATION
        if raw > 0:  # some work, or minReplicas > 0
            return raw, None
        assert self._last_busy is not None
        if now - self._last_busy >= policy.cooldown_seconds:
            return 0, Reason.SCALE_TO_ZERO
        return 1, Reason.COOLING_DOWN  # no work yet, but keep one pod until the cooldown ends

    def _remember(self, now: float, recommendation: int, window_seconds: float) -> None:
        self._window.append((now, recommendation))
        while self._window and self._window[0][0] < now - window_seconds:
            self._window.popleft()
