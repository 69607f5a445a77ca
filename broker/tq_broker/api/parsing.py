"""Large JSON bodies are parsed off the event loop, two at a time.

A 64 MiB batch parsed on the loop froze every other request of the replica for about a
second. FastAPI calls `request.json()` for a JSON body; `OffLoopJsonRoute` gives its routes a
request whose `json()` hands bodies over `OFF_LOOP_MIN_BYTES` to a worker thread, while small
bodies (nearly all of them) stay on the loop and pay no thread hop.

The one thing not to break: a malformed body still raises json.JSONDecodeError from `json()`,
so FastAPI turns it into the same 400 as before.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

OFF_LOOP_MIN_BYTES = 256 * 1024
PARSERS_MAX = 2  # large bodies parsed at once; more wait (in their threads)
_parsers = threading.BoundedSemaphore(PARSERS_MAX)


def _parse_bounded(body: bytes) -> Any:
    with _parsers:
        return json.loads(body)


class OffLoopJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) >= OFF_LOOP_MIN_BYTES:
                self._json = await asyncio.to_thread(_parse_bounded, body)
            else:
                self._json = json.loads(body)
        return self._json


class OffLoopJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(OffLoopJsonRequest(request.scope, request.receive))

        return route
