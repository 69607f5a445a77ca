"""kopf handlers for TaskSchedules: each resource owns one broker schedule,
`k8s-<namespace>-<name>` (schedule_spec.py), and keeps it equal to its spec.

* create/update/resume: write the schedule (PATCH, or POST when it does not exist yet);
* delete (behind the operator's finalizer): delete the schedule; one already gone is fine;
* a timer per resource: every `TQ_OPERATOR_SCHEDULE_STATUS_SECONDS` (default 30) copy the
  schedule's next and last fire into the status, and write it again if someone deleted it.

Errors leave as kopf's retry protocol: an unreachable or overloaded broker, and a key it
refuses (401/403: a Secret can be fixed without touching the spec), are TemporaryErrors (the
status says so and kopf retries); a refusal of the spec (400: a cron the broker cannot fire,
an unknown time zone; a broker URL off the allow-list) is written to the status as
Synced=False, reason Refused, and is a PermanentError until the spec changes.

The one thing not to break: deleting the resource deletes its schedule before the finalizer
lets the resource go, so no schedule outlives its resource while the broker can be reached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import kopf

from tq_client.client import (
    AsyncTaskQueueClient,
    Forbidden,
    InvalidRequest,
    NotFound,
    TaskQueueError,
    Unauthorized,
)
from tq_client.schedules import ScheduleInfo
from tq_operator.broker import BrokerClient, BrokerUrlRefused
from tq_operator.kube import Kube, SecretUnavailable
from tq_operator.schedule_spec import (
    PLURAL,
    InvalidScheduleSpec,
    ScheduleSpec,
    parse_schedule_spec,
    schedule_name,
    status_of,
)
from tq_operator.spec import GROUP, VERSION
from tq_operator.status import with_condition

SYNCED = "Synced"
TICK_SECONDS = 1.0
STATUS_SECONDS_ENV = "TQ_OPERATOR_SCHEDULE_STATUS_SECONDS"
STATUS_SECONDS_DEFAULT = 30.0
RETRY_SECONDS = 5.0
FORBIDDEN_RETRY_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 5.0

log = logging.getLogger(__name__)


@dataclass
class ScheduleClients:
    """One client per (broker URL, key) for the operator's life; closed at cleanup."""

    status_seconds: float = STATUS_SECONDS_DEFAULT
    clients: dict[tuple[str, str | None], AsyncTaskQueueClient] = field(default_factory=dict)

    def get(self, url: str, api_key: str | None) -> AsyncTaskQueueClient:
        key = (url, api_key)
        if key not in self.clients:
            self.clients[key] = AsyncTaskQueueClient(url, api_key, REQUEST_TIMEOUT_SECONDS)
        return self.clients[key]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()


@kopf.on.startup()
async def schedules_startup(memo: kopf.Memo, **_: Any) -> None:
    seconds = float(os.environ.get(STATUS_SECONDS_ENV) or STATUS_SECONDS_DEFAULT)
    memo["schedule_clients"] = ScheduleClients(status_seconds=max(seconds, TICK_SECONDS))


@kopf.on.cleanup()
async def schedules_cleanup(memo: kopf.Memo, **_: Any) -> None:
    clients: ScheduleClients | None = memo.get("schedule_clients")
    if clients is not None:
        await clients.close()


class Refused(Exception):
    """The broker (or the operator's own rules) refused this spec: wrong until it changes."""


@asynccontextmanager
async def _broker_errors() -> AsyncIterator[None]:
    """The broker's answers in kopf's retry protocol (Refused: a permanent error)."""
    try:
        yield
    except InvalidRequest as exc:
        raise Refused(f"the broker refused the schedule: {exc.status} {exc.message}") from exc
    except (Unauthorized, Forbidden) as exc:  # a key may be fixed without touching the spec
        raise kopf.TemporaryError(
            f"broker: not allowed ({exc.status}): {exc.message}", delay=FORBIDDEN_RETRY_SECONDS
        ) from exc
    except TaskQueueError as exc:
        raise kopf.TemporaryError(f"broker: {exc.message}", delay=RETRY_SECONDS) from exc


async def _client(memo: kopf.Memo, namespace: str, spec: ScheduleSpec) -> AsyncTaskQueueClient:
    broker: BrokerClient = memo["broker"]
    kube: Kube = memo["kube"]
    try:
        broker.check_url(spec.broker_url)
        api_key = broker.own_key
        if api_key is None and spec.api_key_secret is not None:
            ref = spec.api_key_secret
            api_key = await kube.read_secret_value(namespace, ref.name, ref.key)
    except BrokerUrlRefused as exc:
        raise Refused(str(exc)) from exc
    except SecretUnavailable as exc:  # it may be created later: try again
        raise kopf.TemporaryError(str(exc), delay=RETRY_SECONDS) from exc
    clients: ScheduleClients = memo["schedule_clients"]
    return clients.get(spec.broker_url, api_key)


async def _write(client: AsyncTaskQueueClient, name: str, spec: ScheduleSpec) -> ScheduleInfo:
    async with _broker_errors():
        try:
            return await client.update_schedule(name, **spec.fields)
        except NotFound:
            return await client.create_schedule(name, **spec.fields)


def _set_synced(
    status: MutableMapping[str, Any], current: Any, ok: bool, reason: str, message: str
) -> None:
    before = (current or {}).get("conditions")
    conditions = with_condition(before, SYNCED, ok, reason, message)
    if conditions != before:  # an unchanged status is not written (no event every tick)
        status["conditions"] = conditions


def _set_fields(status: MutableMapping[str, Any], current: Any, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        if (current or {}).get(key) != value:
            status[key] = value


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def sync_schedule(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    broker_name = schedule_name(str(namespace), name)
    _set_fields(
        patch.status,
        status,
        {"scheduleName": broker_name, "observedGeneration": meta.get("generation")},
    )
    try:
        parsed = parse_schedule_spec(dict(spec))
        client = await _client(memo, str(namespace), parsed)
        schedule = await _write(client, broker_name, parsed)
    except (InvalidScheduleSpec, Refused) as exc:
        _set_synced(patch.status, status, False, "Refused", str(exc))
        raise kopf.PermanentError(str(exc)) from exc
    except kopf.TemporaryError as exc:
        _set_synced(patch.status, status, False, "BrokerUnavailable", str(exc))
        raise
    _set_fields(patch.status, status, status_of(schedule))
    _set_synced(patch.status, status, True, "Synced", f"schedule {broker_name} is up to date")


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete_schedule(
    spec: kopf.Spec,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    broker_name = schedule_name(str(namespace), name)
    try:
        parsed = parse_schedule_spec(dict(spec))
        client = await _client(memo, str(namespace), parsed)
        async with _broker_errors():
            with contextlib.suppress(NotFound):  # never written, or deleted already
                await client.delete_schedule(broker_name)
    except (InvalidScheduleSpec, Refused) as exc:
        # Never synced (or cannot be reached with this spec): nothing to delete that we
        # could reach; the resource goes, and the event says why.
        logger.warning("schedule %s not deleted from the broker: %s", broker_name, exc)


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS)
async def refresh_status(
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    """Copy the broker's view into the status; write the schedule again if it is gone."""
    clients: ScheduleClients = memo["schedule_clients"]
    due = memo.get("schedule_status_due", 0.0)
    if time.monotonic() < due:
        return
    memo["schedule_status_due"] = time.monotonic() + clients.status_seconds
    synced = next((c for c in status.get("conditions") or () if c.get("type") == SYNCED), None)
    if synced is None or synced.get("reason") == "Refused":
        return  # the create/update handler owns the first sync and refusals
    broker_name = schedule_name(str(namespace), name)
    try:
        parsed = parse_schedule_spec(dict(spec))
        client = await _client(memo, str(namespace), parsed)
        async with _broker_errors():
            try:
                schedule = await client.get_schedule(broker_name)
            except NotFound:
                log.warning("schedule %s was deleted behind the operator; writing it", name)
                schedule = await _write(client, broker_name, parsed)
    except (InvalidScheduleSpec, Refused) as exc:
        _set_synced(patch.status, status, False, "Refused", str(exc))
        return
    except kopf.TemporaryError as exc:
        _set_synced(patch.status, status, False, "BrokerUnavailable", str(exc))
        return
    _set_fields(patch.status, status, status_of(schedule))
    _set_synced(patch.status, status, True, "Synced", f"schedule {broker_name} is up to date")
