"""The WorkerPool's status: conditions and timestamps, built as plain values.

The one thing not to break: a condition's `lastTransitionTime` changes only when its `status`
does, so `kubectl wait --for=condition=...` and alerting see real transitions, not every poll.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

BROKER_REACHABLE = "BrokerReachable"


def utc_timestamp(now: datetime.datetime | None = None) -> str:
    """RFC 3339 in UTC with a `Z`, second precision, as Kubernetes writes them."""
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int | None = None,
    now: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """A copy of `conditions` with `type_` set; other conditions are kept as they are."""
    value = "True" if status else "False"
    result: list[dict[str, Any]] = []
    previous: Mapping[str, Any] | None = None
    for condition in conditions or ():
        if condition.get("type") == type_:
            previous = condition
        else:
            result.append(dict(condition))
    unchanged = previous is not None and previous.get("status") == value
    updated: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": (
            previous.get("lastTransitionTime") if unchanged and previous else None
        )
        or utc_timestamp(now),
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    result.append(updated)
    return result


def condition(status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for item in (status or {}).get("conditions") or ():
        if item.get("type") == type_:
            return dict(item)
    return None
