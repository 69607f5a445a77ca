"""Optional TLS: REST, WebSocket and gRPC of one broker over TLS from one certificate."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tq_broker.rpc import taskqueue_pb2 as pb
from tq_broker.rpc import taskqueue_pb2_grpc as pb_grpc

from ..support.processes import BrokerProcess, free_port


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_broker(database_url: str, tmp_path: Path) -> Iterator[tuple[BrokerProcess, Path]]:
    cert, key = self_signed(tmp_path)
    env = {
        "TQ_TLS_CERT_FILE": str(cert),
        "TQ_TLS_KEY_FILE": str(key),
        "TQ_GRPC_PORT": str(free_port()),
    }
    broker = BrokerProcess(["--database-url", database_url], tmp_path / "broker.log", env=env)
    broker.start(wait=False)
    https = f"https://127.0.0.1:{broker.port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if (
                httpx.get(
                    f"{https}/health",
                    verify=ssl.create_default_context(cafile=str(cert)),
                    timeout=1,
                ).status_code
                == 200
            ):
                break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, broker.log()
            time.sleep(0.1)
    try:
        yield broker, cert
    finally:
        broker.stop()


async def test_rest_websocket_and_grpc_speak_tls(tls_broker: tuple[BrokerProcess, Path]) -> None:
    broker, cert = tls_broker
    https = f"https://127.0.0.1:{broker.port}"
    submitted = httpx.post(
        f"{https}/api/v1/tasks",
        json={"task_type": "noop"},
        verify=ssl.create_default_context(cafile=str(cert)),
    )
    assert submitted.status_code == 201
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
        httpx.get(f"http://127.0.0.1:{broker.port}/health", timeout=2)
    context = ssl.create_default_context(cafile=str(cert))
    async with websockets.connect(f"wss://127.0.0.1:{broker.port}/ws", ssl=context) as ws:
        await ws.send('{"type": "subscribe", "filters": {}}')
        assert "subscribed" in await ws.recv()
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    port = int(broker.env["TQ_GRPC_PORT"])
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stats = pb_grpc.TaskQueueStub(channel).GetStats(pb.GetStatsRequest(), timeout=10)
    assert stats.pending_count == 1


def test_a_certificate_without_its_key_is_refused(database_url: str, tmp_path: Path) -> None:
    from tq_broker.settings import BrokerSettings

    cert, _ = self_signed(tmp_path)
    with pytest.raises(ValueError, match="both"):
        BrokerSettings(database_url=database_url, tls_cert_file=str(cert))
