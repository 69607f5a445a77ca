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

from starlette.types import ASGIApp, Receive, Scope, Send

from tq_broker.api.errors import error_response
from tq_broker.auth import Authenticator
from tq_broker.errors import BrokerError, StoreUnavailable
from tq_broker.ratelimit import TokenBucket, retry_after
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
        self._rate = failures_per_second
        self._burst = failures_burst
        self._clock = clock
        self._failures: dict[str, TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        auth: Authenticator = scope["app"].state.authenticator
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
        bucket = self._failures.get(client)
        now = self._clock()
        if bucket is not None:
            bucket.refill(now)
            if bucket.tokens < 1:
                wait = retry_after(bucket.seconds_until(1))
                message = "too many requests with a wrong API key from this address"
                return 429, message, {"Retry-After": str(wait)}
        header = _header(scope, b"authorization")
        try:
            principal = await auth.authenticate(header)
        except BrokerError as exc:
            if not isinstance(exc, StoreUnavailable):
                self._count_failure(client, now)
                return 401, str(exc), {"WWW-Authenticate": "Bearer"}
            return None  # the database is away: let the route answer 503 as usual
        scope.setdefault("state", {})["principal"] = principal
        return None

    def _count_failure(self, client: str, now: float) -> None:
        bucket = self._failures.get(client)
        if bucket is None:
            if len(self._failures) >= FAILED_AUTH_ADDRESSES_MAX:
                self._failures.clear()
            bucket = self._failures[client] = TokenBucket(self._rate, self._burst, self._burst, now)
        bucket.take(1, now)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _foreign_origin(scope: Scope) -> tuple[int, str, dict[str, str]] | None:
    """With auth off: refuse a non-loopback Host, or an Origin other than the Host's own."""
    host = _header(scope, b"host") or ""
    hostname = urlsplit(f"//{host}").hostname or ""
    if not is_loopback(hostname):
        return 403, f"with authentication off, Host must be a loopback address, not {host!r}", {}
    origin = _header(scope, b"origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.netloc != host or parts.scheme not in ("http", "https"):
            return 403, "with authentication off, cross-origin requests are refused", {}
    return None
