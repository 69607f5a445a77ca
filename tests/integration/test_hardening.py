"""Attacks that used to work, each against a real broker process: a huge unauthenticated body,
a browser page on another origin while auth is off, key guessing, a too-short bootstrap key,
and malformed WebSocket frames."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ..support.processes import BrokerProcess

ADMIN = "hardening-admin-key-0123456789abcdef"
BODY_MIB = 60
MEMORY_GROWTH_MAX = 100 * 1024 * 1024


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {"TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN, "TQ_AUTH_FAILURES_BURST": "5"}
    with BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log", env=env
    ).running() as broker:
        yield broker


@pytest.fixture
def open_broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log"
    ).running() as broker:
        yield broker


def rss(broker: BrokerProcess) -> int:
    assert broker.process is not None
    return int(psutil.Process(broker.process.pid).memory_info().rss)


def test_an_unauthenticated_60_mib_body_is_refused_before_it_is_read(
    secured: BrokerProcess,
) -> None:
    idle = rss(secured)
    chunk = b"[" + b" " * (1024 * 1024 - 1)

    def body() -> Iterator[bytes]:
        for _ in range(BODY_MIB):
            yield chunk

    peak = idle
    answered = None
    try:
        response = httpx.post(
            f"{secured.url}/api/v1/tasks/batch",
            content=body(),
            headers={"Content-Type": "application/json", "Content-Length": str(BODY_MIB << 20)},
            timeout=30,
        )
        answered = response.status_code
    except httpx.TransportError:
        answered = None  # the broker answered 401 and closed before we finished sending
    peak = max(peak, rss(secured))
    assert answered in (None, 401), answered
    assert peak - idle < MEMORY_GROWTH_MAX, f"grew by {(peak - idle) >> 20} MiB"
    # and it still serves
    assert httpx.get(f"{secured.url}/health").status_code == 200


def test_repeated_wrong_keys_from_one_address_are_throttled(secured: BrokerProcess) -> None:
    wrong = {"Authorization": "Bearer tq_guess_" + "x" * 43}
    codes = [httpx.get(f"{secured.url}/api/v1/tasks", headers=wrong).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5
    assert codes[-1] == 429
    right = {"Authorization": f"Bearer {ADMIN}"}
    throttled = httpx.get(f"{secured.url}/api/v1/tasks", headers=right)
    assert throttled.status_code == 429, "the address is throttled, whatever key it sends next"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_a_short_bootstrap_key_is_refused_at_startup(database_url: str) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "tq_broker.cli", "migrate", "--database-url", database_url],
        env={**os.environ, "TQ_ADMIN_API_KEY": "a"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert "at least 32 characters" in started.stderr


def test_with_auth_off_only_loopback_hosts_and_same_origin_pages_get_in(
    open_broker: BrokerProcess,
) -> None:
    url = f"{open_broker.url}/api/v1/tasks"
    rebound = httpx.get(url, headers={"Host": "attacker.example:8080"})
    assert rebound.status_code == 403
    assert "loopback" in rebound.json()["error"]
    cross = httpx.post(
        url, json={"task_type": "noop"}, headers={"Origin": "http://attacker.example"}
    )
    assert cross.status_code == 403
    host = open_broker.url.removeprefix("http://")
    same = httpx.post(url, json={"task_type": "noop"}, headers={"Origin": f"http://{host}"})
    assert same.status_code == 201
    assert httpx.get(url.replace("127.0.0.1", "localhost")).status_code == 200
    stored = httpx.get(url).json()
    assert len(stored) == 1, "a refused request wrote something"


async def test_a_cross_origin_websocket_is_refused_with_auth_off(
    open_broker: BrokerProcess,
) -> None:
    ws_url = open_broker.url.replace("http://", "ws://") + "/ws"
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws_url, origin="http://attacker.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_malformed_websocket_frames_get_an_error_not_a_traceback(
    open_broker: BrokerProcess,
) -> None:
    ws_url = open_broker.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws_url) as ws:
        await ws.send("[" * 60_000)
        answer = json.loads(await ws.recv())
        assert answer == {"type": "error", "error": "message nested too deeply"}
        await ws.send(json.dumps({"type": "subscribe", "filters": {}}))
        assert json.loads(await ws.recv())["type"] == "subscribed", "the connection survives"
    async with websockets.connect(ws_url) as ws:
        await ws.send(b"\x00binary")
        assert json.loads(await ws.recv())["type"] == "error"
        await ws.wait_closed()
        assert ws.close_code == 1003
    time.sleep(0.2)
    assert "Traceback" not in open_broker.log_path.read_text()


@pytest.fixture
def impatient(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {"TQ_HEADER_TIMEOUT_SECONDS": "1", "TQ_BODY_TIMEOUT_SECONDS": "1"}
    with BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log", env=env
    ).running() as broker:
        yield broker


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False


def test_connections_that_never_finish_a_request_are_closed(impatient: BrokerProcess) -> None:
    """3,000 such connections used to be held for 90 s and more."""
    silent = socket.create_connection(("127.0.0.1", impatient.port))
    headers_only = socket.create_connection(("127.0.0.1", impatient.port))
    headers_only.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
    trickle = socket.create_connection(("127.0.0.1", impatient.port))
    trickle.sendall(
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    try:
        for name, sock in (("silent", silent), ("headers", headers_only), ("body", trickle)):
            assert closed_by_server(sock, 5), f"the {name} connection was kept open"
    finally:
        for sock in (silent, headers_only, trickle):
            sock.close()
    # A request that is complete and waiting for its answer is not cut: a 3 s long-poll.
    worker = {"worker_id": "patient", "task_types": ["x"], "concurrency": 1}
    assert httpx.post(f"{impatient.url}/api/v1/workers", json=worker).status_code == 201
    started = time.monotonic()
    claim = httpx.post(
        f"{impatient.url}/api/v1/tasks/claim",
        json={"worker_id": "patient", "wait_seconds": 3},
        timeout=10,
    )
    assert claim.status_code == 200 and time.monotonic() - started >= 3
