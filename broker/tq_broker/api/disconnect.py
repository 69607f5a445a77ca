"""Knowing when a long-polling client hangs up, so its request stops waiting for nobody."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Request


async def _watch(request: Request, gone: asyncio.Event) -> None:
    """Set `gone` when the client hangs up (the body was read already: what comes next is the
    server's word that the connection closed)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()


@contextlib.asynccontextmanager
async def disconnect_event(request: Request) -> AsyncIterator[asyncio.Event]:
    """An event set once the client has hung up, for the duration of the block."""
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(request, gone))
    try:
        yield gone
    finally:
        watcher.cancel()
