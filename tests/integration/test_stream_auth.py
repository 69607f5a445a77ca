"""Streams and secrets: a key never reaches a log line, browsers connect with single-use
tickets instead of keys in URLs, and revoking a key ends its open streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tq_broker.rpc import taskqueue_pb2 as pb
from tq_broker.rpc import taskqueue_pb2_grpc as pb_grpc

from ..support.processes import BrokerProcess, free_port

ADMIN = "stream-auth-admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
KEY_CACHE_SECONDS = 1.0
CLOSED_WITHIN_SECONDS = 3 * KEY_CACHE_SECONDS + 2
STREAMS_PER_KEY = 2


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {
        "TQ_AUTH": "on",
        "TQ_ADMIN_API_KEY": ADMIN,
        "TQ_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS),
        "TQ_GRPC_PORT": str(free_port()),
        "TQ_ACCESS_LOG": "true",
        "TQ_STREAMS_PER_KEY_MAX": str(STREAMS_PER_KEY),
    }
    with BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log", env=env
    ).running() as process:
        yield process


def new_key(broker: BrokerProcess, permissions: list[str], **limits: int) -> dict[str, str]:
    response = httpx.post(
        f"{broker.url}/api/v1/keys",
        json={"name": "streams", "permissions": permissions, **limits},
        headers=AUTH,
    )
    assert response.status_code == 201
    return dict(response.json())


def ws_url(broker: BrokerProcess, query: str) -> str:
    return broker.url.replace("http://", "ws://") + "/ws?" + query


async def subscribed(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"type": "subscribe", "filters": {}}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    return ws


async def test_a_key_in_a_websocket_url_never_reaches_the_log(broker: BrokerProcess) -> None:
    key = new_key(broker, ["read_tasks"])["key"]
    ws = await subscribed(ws_url(broker, f"token={key}"))
    await ws.close()
    await asyncio.sleep(0.3)
    log = broker.log_path.read_text()
    assert "WebSocket /ws" in log, "uvicorn logged no WebSocket line to check"
    secret = key.rsplit("_", 1)[1]
    assert secret not in log, "the API key was written to the broker's log"


async def test_a_ticket_opens_one_websocket_once(broker: BrokerProcess) -> None:
    key = new_key(broker, ["read_tasks"])["key"]
    response = httpx.post(
        f"{broker.url}/api/v1/ws-tickets", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201
    ticket = response.json()["ticket"]
    assert response.json()["expires_in_seconds"] > 0
    ws = await subscribed(ws_url(broker, f"ticket={ticket}"))
    await ws.close()
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ws_url(broker, f"ticket={ticket}"))
    assert refused.value.response.status_code == 403, "a ticket worked twice"
    with pytest.raises(InvalidStatus):
        await websockets.connect(ws_url(broker, "ticket=tqt_made-up"))
    assert ticket not in broker.log_path.read_text()


def revoke(broker: BrokerProcess, key_id: str) -> None:
    assert httpx.delete(f"{broker.url}/api/v1/keys/{key_id}", headers=AUTH).status_code == 204


async def drain(ws: websockets.ClientConnection) -> None:
    while True:
        await ws.recv()


async def test_revoking_a_key_closes_its_websocket(broker: BrokerProcess) -> None:
    created = new_key(broker, ["read_tasks"])
    ws = await subscribed(ws_url(broker, f"token={created['key']}"))
    revoke(broker, created["key_id"])
    revoked_at = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(drain(ws), CLOSED_WITHIN_SECONDS)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert time.monotonic() - revoked_at < CLOSED_WITHIN_SECONDS


def test_revoking_a_key_ends_its_grpc_stream(broker: BrokerProcess) -> None:
    created = new_key(broker, ["read_tasks"])
    port = int(broker.env["TQ_GRPC_PORT"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.TaskQueueStub(channel)
        call = stub.StreamTaskUpdates(
            pb.StreamTaskUpdatesRequest(),
            metadata=(("authorization", f"Bearer {created['key']}"),),
            timeout=CLOSED_WITHIN_SECONDS + 10,
        )
        call.initial_metadata()
        revoke(broker, created["key_id"])
        revoked_at = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            for _ in call:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert time.monotonic() - revoked_at < CLOSED_WITHIN_SECONDS


async def test_a_key_has_a_bounded_number_of_open_streams(broker: BrokerProcess) -> None:
    key = new_key(broker, ["read_tasks"])["key"]
    url = ws_url(broker, f"token={key}")
    first, second = await subscribed(url), await subscribed(url)
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403
    other = await subscribed(ws_url(broker, f"token={new_key(broker, ['read_tasks'])['key']}"))
    await first.close()
    await asyncio.sleep(0.3)
    third = await subscribed(url)  # a stream closed: room for one more
    for ws in (second, other, third):
        await ws.close()


async def test_a_websocket_handshake_spends_a_rate_limit_token(broker: BrokerProcess) -> None:
    key = new_key(broker, ["read_tasks"], rate_limit=1, burst=1)["key"]
    url = ws_url(broker, f"token={key}")
    ws = await subscribed(url)
    await ws.close()
    with pytest.raises(InvalidStatus):
        await websockets.connect(url)
