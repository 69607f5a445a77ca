"""One table from the broker's exceptions to HTTP status codes and the contract's error body.

The one thing not to break: every error leaves as `{"error": "..."}`. FastAPI's own 422
validation response never reaches a client; it becomes a 400 naming the field.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tq_broker.api.security import rate_limit_headers
from tq_broker.auth import RateLimited, Unauthenticated
from tq_broker.error_codes import codes_of
from tq_broker.errors import (
    BrokerError,
)

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            }
        },
    }
    for code, description in [
        (400, "Invalid request"),
        (401, "Missing, malformed, unknown or revoked API key"),
        (403, "The API key lacks the permission"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Payload too large"),
        (429, "Rate limit exceeded (see Retry-After)"),
        (503, "Broker unavailable or degraded"),
    ]
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def describe_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            where, message = "body", "malformed JSON"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for this path (a literal path beats a template).

    Starlette's own 405 names only the methods of the first route it matched.
    """
    paths: dict[str, dict[str, object]] = request.app.openapi().get("paths", {})
    literal = paths.get(request.url.path)
    if literal is not None:
        return sorted(m.upper() for m in literal)
    methods: set[str] = set()
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


def broker_error_response(exc: BrokerError) -> JSONResponse:
    status, _ = codes_of(exc)
    headers: dict[str, str] | None = None
    if status == 503:
        headers = {"Retry-After": "1"}
    elif isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited):
        headers = rate_limit_headers(exc.decision)
    return error_response(status, str(exc), headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_broker_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BrokerError)
        return broker_error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, describe_validation_error(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, str(exc.detail), headers or None)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error")

    app.add_exception_handler(BrokerError, on_broker_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
