"""POST /api/v1/tasks for a valid request, without FastAPI's per-request machinery.

A submit's profile (`bench/profile_broker.py single`) spent about a third of its Python calls
in FastAPI: matching the route, solving its dependencies, reading the body into a dict and
validating the dict. `SubmitFastPath` is the innermost middleware (behind the size limits, the
guard, the metrics and the rate-limit headers, which all still apply): for `POST
/api/v1/tasks` it reads the body, validates it in one pass with
`SubmitTaskRequest.model_validate_json`, authorizes and stores it exactly as the route does.

Whatever it would refuse before storing anything — a body that does not validate, a bad
`Idempotency-Key`, a body large enough that the route parses it off the event loop — it hands
to the FastAPI route with the same body, so refusals keep their exact texts and the route stays
the one definition in the OpenAPI document. Errors after that point (403, 429, 409, 413, 503)
are answered by the same mapping as the route's (`errors.broker_error_response`).

The one thing not to break: the fast path accepts exactly what the route accepts and stores the
same thing (`tests/unit/test_submit_fast_path.py` checks both on generated bodies).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tq_broker.api.deps import broker_of
from tq_broker.api.errors import broker_error_response, error_response
from tq_broker.api.parsing import OFF_LOOP_MIN_BYTES
from tq_broker.api.security import authorize_request
from tq_broker.api.tasks import IDEMPOTENCY_KEY_PATTERN
from tq_broker.auth import submitter_of
from tq_broker.errors import BrokerError
from tq_broker.keys import Permission
from tq_client.models import SubmitTaskRequest

SUBMIT_PATH = "/api/v1/tasks"
IDEMPOTENCY_HEADER = b"idempotency-key"
BODY_UNREADABLE = "There was an error parsing the body"  # FastAPI's text for the same case


def parse_submit(body: bytes) -> SubmitTaskRequest | None:
    """The request, if the body is one the fast path takes; None: let the route decide."""
    if len(body) >= OFF_LOOP_MIN_BYTES:
        return None
    try:
        return SubmitTaskRequest.model_validate_json(body)
    except ValidationError:
        return None


class SubmitFastPath:
    """Pure ASGI middleware; `route` is the FastAPI route it stands in for (the metrics label
    requests by `scope["route"].path`)."""

    def __init__(self, app: ASGIApp, route: Any) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != SUBMIT_PATH:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # every answer from here is counted under the route
        try:
            body = await _read_body(receive)
        except HTTPException as exc:  # the size limit, while streaming
            await error_response(exc.status_code, str(exc.detail))(scope, receive, send)
            return
        if body is None:  # the client went away mid-body: answered (to nobody) as the route does
            await error_response(400, BODY_UNREADABLE)(scope, receive, send)
            return
        request = parse_submit(body)
        key_taken, idempotency_key = _idempotency_key(scope)
        if request is None or not key_taken:
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            http_request = Request(scope, receive)
            principal = await authorize_request(http_request, Permission.SUBMIT_TASKS)
            store = broker_of(scope["app"]).store
            submitted = await store.task_insert(request, idempotency_key, submitter_of(principal))
        except BrokerError as exc:
            await broker_error_response(exc)(scope, receive, send)
            return
        content = submitted.task.model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 201 if submitted.created else 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _idempotency_key(scope: Scope) -> tuple[bool, str | None]:
    """(whether the fast path may take it, the header's value or None). Not taken: the route
    refuses it or decides (more than one header; not 1-255 printable ASCII characters without
    spaces, the route's own rule)."""
    found: str | None = None
    for name, value in scope["headers"]:
        if name == IDEMPOTENCY_HEADER:
            if found is not None:
                return False, None
            try:
                found = value.decode("ascii")
            except UnicodeDecodeError:
                return False, None
    if found is not None and not IDEMPOTENCY_KEY_PATTERN.match(found):
        return False, None
    return True, found


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body; None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then whatever comes after it."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
