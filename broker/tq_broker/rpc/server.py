"""The gRPC server beside the HTTP one: TaskQueue, the standard health service, reflection.

The replica's `Broker` owns it (`open_broker(..., serve_grpc=True)`): started once the store,
event hub and authenticator exist, stopped before they close.

The one thing not to break: it binds its port exclusively (gRPC's default SO_REUSEPORT would
let a second broker on the same port silently share, or steal, the traffic).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]

from tq_broker.rpc import taskqueue_pb2 as pb
from tq_broker.rpc.service import TaskQueueService
from tq_broker.rpc.taskqueue_pb2_grpc import add_TaskQueueServicer_to_server
from tq_broker.settings import BrokerSettings

if TYPE_CHECKING:
    from tq_broker.broker import Broker

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["TaskQueue"].full_name
STOP_GRACE_SECONDS = 10.0  # in-flight unary calls get this long; open streams end at once
MESSAGE_OVERHEAD_BYTES = 64 * 1024  # a submit's fields besides its payload


def server_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    """TLS for the gRPC port from the same PEM files as the HTTP port (read at startup)."""
    cert, key = Path(cert_file).read_bytes(), Path(key_file).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._server: grpc.aio.Server | None = None
        self._service: TaskQueueService | None = None
        self._health: Any = None

    async def start(self, broker: Broker) -> int:
        """Serve on settings.host:grpc_port; returns the bound port. Raises RuntimeError."""
        options = [
            ("grpc.so_reuseport", 0),
            # Over the payload limit: RESOURCE_EXHAUSTED before the message is even parsed.
            (
                "grpc.max_receive_message_length",
                self._settings.max_payload_bytes + MESSAGE_OVERHEAD_BYTES,
            ),
        ]
        server = grpc.aio.server(options=options)
        self._service = TaskQueueService(
            broker.store, broker.event_hub, broker.authenticator, broker.open_streams
        )
        add_TaskQueueServicer_to_server(self._service, server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        address = listen_address(self._settings.host, self._settings.grpc_port)
        tls = self._settings.tls_files()
        if tls is None:
            port = server.add_insecure_port(address)  # RuntimeError when it cannot bind
        else:
            port = server.add_secure_port(address, server_credentials(*tls))
        await server.start()
        self._server = server
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC API on %s", listen_address(self._settings.host, port))
        return port

    async def stop(self) -> None:
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()  # NOT_SERVING from here on
        if self._service is not None:
            self._service.close()
        await self._server.stop(STOP_GRACE_SECONDS)
        self._server = None
