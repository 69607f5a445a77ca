"""Request bodies are checked before anything parses them: JSON only (415), capped (413)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tq_broker.api.errors import error_response


class BodySizeLimit:
    """Pure ASGI middleware: a per-path byte cap on request bodies (declared or streamed)."""

    def __init__(self, app: ASGIApp, default_max: int, per_path: dict[str, int]) -> None:
        self.app = app
        self.default_max = default_max
        self.per_path = per_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default_max)
        for name, value in scope["headers"]:
            if name == b"content-type" and not _is_json(value):
                message = "Content-Type must be application/json"
                await error_response(415, message)(scope, receive, send)
                return
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    await error_response(400, "invalid Content-Length")(scope, receive, send)
                    return
                if int(value) > limit:
                    await error_response(413, _too_large(limit))(scope, receive, send)
                    return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, capped_receive, send)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes"
