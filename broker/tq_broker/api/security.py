"""The auth dependency every API route declares: `dependencies=[requires(Permission.X)]`.

Also the middleware that puts the standard RateLimit-* headers on admitted responses.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tq_broker.api.deps import broker_of
from tq_broker.auth import Credentials, Principal
from tq_broker.keys import Permission
from tq_broker.ratelimit import Decision
from tq_broker.worker_store import ANY_CALLER, Caller

# Declares the scheme in the OpenAPI document; the header itself is parsed by the Authenticator.
_bearer_scheme = HTTPBearer(auto_error=False, description="API key: Authorization: Bearer <key>")


async def authorize_request(
    request: Request, permission: Permission, rate_limited: bool = True
) -> Principal | None:
    """Who calls, if they may (403) and within their rate limit (429); None with auth off.
    Leaves the principal and the rate-limit decision in the request's state."""
    auth = broker_of(request.app).authenticator
    if not auth.config.enabled:
        return None
    credentials = Credentials(  # RequestGuard authenticated /api/ already
        header=request.headers.get("authorization"),
        principal=getattr(request.state, "principal", None),
    )
    authorized = await auth.authorize(credentials, permission, rate_limited)
    request.state.principal = authorized.principal
    if authorized.decision is not None:
        request.state.rate_limit = authorized.decision
    return authorized.principal


def requires(permission: Permission, rate_limited: bool = True) -> Any:
    async def check(request: Request, _: Any = Depends(_bearer_scheme)) -> Principal | None:
        return await authorize_request(request, permission, rate_limited)

    return Depends(check)


async def _worker_caller(request: Request) -> Caller:
    """The caller of a worker route (after `requires` ran): its key, and whether it may act as
    any worker (an admin key, or auth off)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        return ANY_CALLER
    return Caller(principal.key_id, principal.may(Permission.ADMIN))


CallerDep = Annotated[Caller, Depends(_worker_caller)]


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    headers = {
        "RateLimit-Limit": f"{decision.limit:g}",
        "RateLimit-Remaining": str(max(0, decision.remaining)),
        "RateLimit-Reset": str(decision.retry_after_seconds or 1),
    }
    if not decision.admitted:
        headers["Retry-After"] = str(decision.retry_after_seconds)
    return headers


class RateLimitHeaders:
    """Pure ASGI middleware: copies the request's rate-limit decision into response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get("rate_limit")
                if isinstance(decision, Decision) and decision.admitted:
                    extra = [
                        (k.lower().encode(), v.encode())
                        for k, v in rate_limit_headers(decision).items()
                    ]
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
