"""uvicorn's HTTP protocol with read deadlines for slow clients.

uvicorn alone keeps a connection that never finishes its request open forever: 3,000 slow
connections held the broker's file descriptors for 90 s and more. Here a connection must send
a request's headers within `header_timeout_seconds` of opening (or of the request's first
byte, on a kept-alive connection) and its body within `body_timeout_seconds` of the headers;
otherwise it is closed. uvicorn's own `limit_concurrency` (503 past it) caps the rest.

The one thing not to break: the deadlines run only while we wait for the client's request
bytes. A request being answered (a long-poll claim), a kept-alive idle connection (uvicorn's
keep-alive timeout covers it) and a WebSocket after its upgrade are never cut.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_SECONDS_DEFAULT = 10.0
BODY_TIMEOUT_SECONDS_DEFAULT = 60.0


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_seconds = HEADER_TIMEOUT_SECONDS_DEFAULT
    body_timeout_seconds = BODY_TIMEOUT_SECONDS_DEFAULT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_seconds)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.header_timeout_seconds)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout_seconds)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_with_deadlines(
    header_timeout_seconds: float, body_timeout_seconds: float
) -> type[DeadlineHttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these deadlines."""
    return type(
        "BrokerHttpProtocol",
        (DeadlineHttpToolsProtocol,),
        {
            "header_timeout_seconds": header_timeout_seconds,
            "body_timeout_seconds": body_timeout_seconds,
        },
    )
