"""The TaskSchedule resource: its coordinates, the broker schedule it owns, and its spec as
the fields of the broker's schedule calls (pure functions; nothing here talks to anything).

The one thing not to break: a TaskSchedule's broker schedule is named `k8s-<namespace>-<name>`,
always. The operator finds, updates and deletes the schedule by that name alone; renaming the
scheme strands every existing schedule in the broker.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tq_client.models import PRIORITY_DEFAULT
from tq_client.schedules import TIMEZONE_DEFAULT, MissedFires, ScheduleInfo
from tq_operator.spec import API_KEY_SECRET_KEY_DEFAULT, SecretKeyRef
from tq_operator.status import utc_timestamp

PLURAL = "taskschedules"
KIND = "TaskSchedule"
NAME_PREFIX = "k8s-"


class InvalidScheduleSpec(ValueError):
    """The spec cannot be acted on (the CRD's schema and CEL rules normally prevent this)."""


def schedule_name(namespace: str, name: str) -> str:
    """The broker schedule a TaskSchedule owns (shown in its status as `scheduleName`)."""
    return f"{NAME_PREFIX}{namespace}-{name}"


@dataclass(frozen=True)
class ScheduleSpec:
    broker_url: str
    api_key_secret: SecretKeyRef | None
    fields: Mapping[str, Any]  # the broker's schedule fields, less the name


def parse_schedule_spec(spec: Mapping[str, Any]) -> ScheduleSpec:
    """Read a TaskSchedule's `spec`; raises InvalidScheduleSpec for what no schema admits."""
    try:
        broker = spec["broker"]
        cron, interval = spec.get("cron"), spec.get("intervalSeconds")
        if (cron is None) == (interval is None):
            raise InvalidScheduleSpec("give exactly one of cron and intervalSeconds")
        fields = {
            "cron": None if cron is None else str(cron),
            "interval_seconds": None if interval is None else int(interval),
            "timezone": str(spec.get("timezone") or TIMEZONE_DEFAULT),
            "task_type": str(spec["taskType"]),
            "payload": _payload(spec),
            "priority": int(spec.get("priority", PRIORITY_DEFAULT)),
            "timeout_seconds": _optional_int(spec.get("timeoutSeconds")),
            "max_retries": _optional_int(spec.get("maxRetries")),
            "paused": bool(spec.get("paused", False)),
            "missed_fires": MissedFires(spec.get("missedFires", MissedFires.FIRE_ONCE.value)),
        }
        return ScheduleSpec(
            str(broker["url"]).rstrip("/"), _secret(broker.get("apiKeySecretRef")), fields
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, InvalidScheduleSpec):
            raise
        raise InvalidScheduleSpec(f"spec is incomplete or malformed: {exc!r}") from exc


def _secret(ref: Mapping[str, Any] | None) -> SecretKeyRef | None:
    if not ref:
        return None
    return SecretKeyRef(str(ref["name"]), str(ref.get("key") or API_KEY_SECRET_KEY_DEFAULT))


def _optional_int(value: Any) -> int | None:
    """Omitted: the task type's default (PATCH leaves an omitted field as it is)."""
    return None if value is None else int(value)


def _payload(spec: Mapping[str, Any]) -> bytes:
    if spec.get("payloadText") is not None:
        return str(spec["payloadText"]).encode("utf-8")
    try:
        return base64.b64decode(str(spec.get("payload") or ""), validate=True)
    except binascii.Error as exc:
        raise InvalidScheduleSpec(f"payload is not base64: {exc}") from exc


def status_of(schedule: ScheduleInfo) -> dict[str, Any]:
    """The status fields a broker schedule shows (timestamps as Kubernetes writes them)."""
    coming = schedule.next_fire_times
    return {
        "scheduleName": schedule.name,
        "nextFireTime": utc_timestamp(coming[0]) if coming else None,
        "lastFireTime": (
            utc_timestamp(schedule.last_fire_time) if schedule.last_fire_time else None
        ),
        "lastTaskId": str(schedule.last_task_id) if schedule.last_task_id else None,
    }
