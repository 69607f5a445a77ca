"""WS /ws: live task status changes, as in the contract's WebSocket section.

Client → server: {"type": "subscribe", "filters": {"task_types": [...], "statuses": [...],
"task_ids": [...]}} (each optional; `task_ids`, beyond the contract: at most
TASK_IDS_FILTER_MAX task UUIDs; a new subscribe replaces the filters). Server → client:
{"type": "subscribed", "filters": {...}} once the subscription is live (every change that
commits after it is delivered, whichever replica makes it; see events.py), then
{"type": "task_update", "task": {"task_id", "task_type", "status", "updated_at"}}, plus
`progress` {fraction, message, updated_at} and `aborted_at`/`aborted_by` when the task has them.
Authenticated like the REST API (read_tasks): `Authorization: Bearer <key>`; browsers, which
cannot set headers, get a single-use ticket from `POST /api/v1/ws-tickets` and connect with
`?ticket=<ticket>` (`?token=<key>` still works, but puts the key in URLs). The key is checked
again at the key-cache interval: a revoked key's stream closes with 4401. A client that falls
behind by more than `SUBSCRIBER_QUEUE_MAX` events is disconnected (close code 1013), never
buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect

from tq_broker.api.deps import broker_of
from tq_broker.api.errors import ERROR_RESPONSES
from tq_broker.api.responses import json_response
from tq_broker.api.security import requires
from tq_broker.auth import (
    TICKET_SECONDS,
    Credentials,
    Principal,
    StreamKey,
    TooManyStreams,
)
from tq_broker.errors import BrokerError
from tq_broker.events import Subscription, TaskEvent
from tq_broker.keys import Permission
from tq_client.models import TASK_IDS_FILTER_MAX, TASK_TYPE_PATTERN, TaskStatus, WsTicket

router = APIRouter()
TOO_SLOW = TRY_AGAIN_LATER = 1013
POLICY_VIOLATION = 1008
UNSUPPORTED_DATA = 1003
KEY_REVOKED = 4401  # the key was revoked while the stream was open
MESSAGE_MAX_BYTES = 64 * 1024
_STATUSES = {s.value for s in TaskStatus}


@dataclass(frozen=True)
class Filters:
    task_types: list[str]
    statuses: list[str]
    task_ids: list[str]  # canonical UUID strings, as events carry them

    def as_json(self) -> dict[str, list[str]]:
        return {"task_types": self.task_types, "statuses": self.statuses, "task_ids": self.task_ids}


def _task_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("task_ids must be a list of task UUIDs")
    if len(value) > TASK_IDS_FILTER_MAX:
        raise ValueError(f"task_ids: at most {TASK_IDS_FILTER_MAX} task UUIDs")
    try:
        return list(dict.fromkeys(str(uuid.UUID(v)) for v in value))
    except ValueError:
        raise ValueError("task_ids must be a list of task UUIDs") from None


def parse_subscribe(raw: str) -> Filters:
    """The filters of a subscribe message; ValueError says what is wrong."""
    if len(raw) > MESSAGE_MAX_BYTES:
        raise ValueError("message too large")
    try:
        message = json.loads(raw)
    except RecursionError:
        raise ValueError("message nested too deeply") from None
    if not isinstance(message, dict) or message.get("type") != "subscribe":
        raise ValueError('expected {"type": "subscribe", "filters": {...}}')
    filters = message.get("filters") or {}
    if not isinstance(filters, dict) or set(filters) - {"task_types", "statuses", "task_ids"}:
        raise ValueError("filters may have task_types, statuses and task_ids")
    task_types = filters.get("task_types") or []
    statuses = filters.get("statuses") or []
    if not isinstance(task_types, list) or not all(
        isinstance(t, str) and re.fullmatch(TASK_TYPE_PATTERN, t) for t in task_types
    ):
        raise ValueError("task_types must be a list of task types")
    if not isinstance(statuses, list) or not all(s in _STATUSES for s in statuses):
        raise ValueError(f"statuses must be a list of {sorted(_STATUSES)}")
    return Filters(task_types, statuses, _task_ids(filters.get("task_ids") or []))


def update_message(event: TaskEvent) -> dict[str, Any]:
    task: dict[str, Any] = {
        "task_id": event.task_id,
        "task_type": event.task_type,
        "status": event.status,
        "updated_at": event.updated_at,
    }
    if event.progress is not None:
        fraction, message, updated_at = event.progress
        task["progress"] = {"fraction": fraction, "message": message, "updated_at": updated_at}
    if event.aborted is not None:
        task["aborted_at"], task["aborted_by"] = event.aborted
    return {"type": "task_update", "task": task}


@router.post(
    "/api/v1/ws-tickets",
    dependencies=[requires(Permission.READ_TASKS)],
    status_code=201,
    response_model=WsTicket,
    responses=ERROR_RESPONSES,
    summary="A single-use ticket for WS /ws?ticket=... (browsers: no key in the URL)",
)
async def create_ws_ticket(request: Request) -> Response:
    auth = broker_of(request.app).authenticator
    principal: Principal | None = getattr(request.state, "principal", None)
    ticket = await auth.issue_ticket(principal)
    return json_response(WsTicket(ticket=ticket, expires_in_seconds=TICKET_SECONDS), 201)


async def _principal(websocket: WebSocket) -> Principal | None:
    """Who connects (None with auth off); raises BrokerError when refused. A ticket is the way
    for browsers; `?token=<key>` still works but puts the key in URLs (never in our logs)."""
    auth = broker_of(websocket.app).authenticator
    if not auth.config.enabled:
        return None
    header = websocket.headers.get("authorization")
    token = websocket.query_params.get("token")
    if header is None and token:
        header = f"Bearer {token}"
    credentials = Credentials(header=header, ticket=websocket.query_params.get("ticket"))
    # A handshake costs a token, like a request.
    return (await auth.authorize(credentials, Permission.READ_TASKS)).principal


@router.websocket("/ws")
async def task_updates(websocket: WebSocket) -> None:
    try:
        principal = await _principal(websocket)
    except BrokerError:
        await websocket.close(code=POLICY_VIOLATION)  # before accept: the handshake gets 403
        return
    streams = broker_of(websocket.app).open_streams
    try:
        with streams.opened(principal):
            await websocket.accept()
            await _serve(websocket, principal)
    except TooManyStreams:
        await websocket.close(code=POLICY_VIOLATION)


async def _serve(websocket: WebSocket, principal: Principal | None) -> None:
    broker = broker_of(websocket.app)
    key = StreamKey(broker.authenticator, principal)
    hub = broker.event_hub
    current: list[Subscription] = []
    forwarder: asyncio.Task[None] | None = None
    try:
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            raw = frame.get("text")
            if raw is None:
                await websocket.send_json({"type": "error", "error": "send text frames of JSON"})
                await websocket.close(code=UNSUPPORTED_DATA)
                break
            try:
                filters = parse_subscribe(raw)
            except ValueError as exc:
                await websocket.send_json({"type": "error", "error": str(exc)})
                continue
            if forwarder is not None:
                forwarder.cancel()
                hub.unsubscribe(current.pop())
            current.append(hub.subscribe(filters.task_types, filters.statuses, filters.task_ids))
            if not await hub.registered():
                await websocket.close(code=TRY_AGAIN_LATER, reason="event feed unavailable")
                return
            await websocket.send_json({"type": "subscribed", "filters": filters.as_json()})
            forwarder = asyncio.create_task(_forward(websocket, current[0], key))
    except WebSocketDisconnect:
        pass
    finally:
        if forwarder is not None:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
        for subscription in current:
            hub.unsubscribe(subscription)


async def _forward(websocket: WebSocket, subscription: Subscription, key: StreamKey) -> None:
    while True:
        try:
            event = await asyncio.wait_for(subscription.queue.get(), key.interval)
        except TimeoutError:
            event = None
        if not await key.still_valid():  # revoked: the stream ends too
            await websocket.close(code=KEY_REVOKED, reason="API key revoked")
            return
        if event is None:
            continue
        if subscription.dropped:  # it fell a whole queue behind: drop it, do not drain
            await websocket.close(code=TOO_SLOW, reason="subscriber too slow; reconnect")
            return
        await websocket.send_json(update_message(event))
