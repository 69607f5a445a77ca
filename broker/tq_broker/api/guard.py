"""Pure ASGI middleware that decides who may talk to the API before any body is read.

- Auth on: a request to `/api/...` is authenticated from its `Authorization` header first; a
  missing or wrong key is answered 401 at once, so an unauthenticated client never makes the
  broker read (let alone parse) a body. The principal is handed on to `requires` in the scope.
  A client address that keeps failing is throttled (429) before its key is even hashed.
- Auth off (loopback only): the `Host` must be a loopback name and an `Origin`, if sent, must
  be the same origin, so a web page elsewhere cannot reach the broker through the browser
  (DNS rebinding, cross-site WebSocket).

The one thing not to break: nothing here reads `receive`; refusing is always cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tq_broker.api.deps import broker_of
from tq_broker.api.errors import error_response
from tq_broker.auth import Authenticator
from tq_broker.errors import BrokerError, StoreUnavailable
from tq_broker.ratelimit import LocalBuckets
from tq_broker.settings import is_loopback

FAILED_AUTH_ADDRESSES_MAX = 10_000


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        failures_per_second: float,
        failures_burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._failures = LocalBuckets(
            failures_per_second, failures_burst, FAILED_AUTH_ADDRESSES_MAX, clock
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        auth = broker_of(scope["app"]).authenticator
        if not auth.config.enabled:
            refusal = _foreign_origin(scope)
        elif scope["type"] == "http" and scope["path"].startswith("/api/"):
            refusal = await self._authenticate(scope, auth)
        else:
            refusal = None  # open routes; /ws authenticates itself before it accepts
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[1]})
        else:
            status, message, headers = refusal
            await error_response(status, message, headers)(scope, receive, send)

    async def _authenticate(
        self, scope: Scope, auth: Authenticator
    ) -> tuple[int, str, dict[str, str]] | None:
        client = (scope.get("client") or ("?", 0))[0]
        throttled = self._failures.refusal(client)
        if throttled is not None:
            message = "too many requests with a wrong API key from this address"
            return 429, message, {"Retry-After": str(throttled.retry_after_seconds)}
        try:
            principal = await auth.authenticate(Headers(scope=scope).get("authorization"))
        except StoreUnavailable:
            return None  # the database is away: let the route answer 503 as usual
        except BrokerError as exc:
            self._failures.take(client)
            return 401, str(exc), {"WWW-Authenticate": "Bearer"}
        scope.setdefault("state", {})["principal"] = principal
        return None


def _foreign_origin(scope: Scope) -> tuple[int, str, dict[str, str]] | None:
    """With auth off: refuse a non-loopback Host, or an Origin other than the Host's own."""
    headers = Headers(scope=scope)
    host = headers.get("host") or ""
    hostname = urlsplit(f"//{host}").hostname or ""
    if not is_loopback(hostname):
        return 403, f"with authentication off, Host must be a loopback address, not {host!r}", {}
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.netloc != host or parts.scheme not in ("http", "https"):
            return 403, "with authentication off, cross-origin requests are refused", {}
    return None
