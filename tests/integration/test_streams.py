"""Live task updates over WebSocket /ws, from tasks processed by a real worker process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tq_broker.events import EventHub, TaskEvent, decode_events, encode_events

from ..support.processes import BrokerProcess

ADMIN = "stream-admin-key-0123456789abcdef0123"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def broker_with_worker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {"TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN}
    broker = BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log", env=env
    ).start()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tq_worker",
                "--app",
                "tq_worker.demo:worker",
                "--broker-url",
                broker.url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TQ_API_KEY": ADMIN},
        )
    try:
        yield broker
    finally:
        worker.terminate()
        worker.wait(30)
        broker.stop()


async def submit(client: httpx.AsyncClient, task_type: str) -> str:
    response = await client.post("/api/v1/tasks", json={"task_type": task_type}, headers=AUTH)
    assert response.status_code == 201
    return str(response.json()["task_id"])


async def next_update(ws: Any, timeout: float) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert message["type"] == "task_update", message
    return dict(message["task"])


async def test_websocket_subscriber_receives_filtered_updates_from_a_real_worker(
    broker_with_worker: BrokerProcess,
) -> None:
    url = broker_with_worker.url.replace("http://", "ws://") + "/ws"
    async with (
        httpx.AsyncClient(base_url=broker_with_worker.url) as client,
        websockets.connect(url, additional_headers=AUTH) as ws,
    ):
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "filters": {"task_types": ["echo"], "statuses": ["completed"]},
                }
            )
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack == {
            "type": "subscribed",
            "filters": {"task_types": ["echo"], "statuses": ["completed"], "task_ids": []},
        }
        # Publishers notice a new subscriber within about a second: probe until one arrives.
        probes: set[str] = set()
        for _ in range(50):
            probes.add(await submit(client, "echo"))
            try:
                if (await next_update(ws, 0.5))["task_id"] in probes:
                    break
            except TimeoutError:
                continue
        else:
            pytest.fail("no update reached the subscriber")
        ignored = await submit(client, "noop")
        wanted = {await submit(client, "echo") for _ in range(5)}
        seen: dict[str, dict[str, Any]] = {}
        while not wanted <= set(seen):
            task = await next_update(ws, 15)
            seen[task["task_id"]] = task
        assert ignored not in seen
        assert all(t["status"] == "completed" and t["task_type"] == "echo" for t in seen.values())
        assert all(t["updated_at"].endswith("Z") for t in seen.values())


async def test_websocket_refuses_missing_or_weak_keys_and_bad_messages(
    broker_with_worker: BrokerProcess,
) -> None:
    url = broker_with_worker.url.replace("http://", "ws://") + "/ws"
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(url):
            pass
    created = httpx.post(
        f"{broker_with_worker.url}/api/v1/keys",
        headers=AUTH,
        json={"name": "submitter", "permissions": ["submit_tasks"]},
    ).json()
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(url + f"?token={created['key']}"):
            pass
    async with websockets.connect(url + f"?token={ADMIN}") as ws:
        await ws.send("not json")
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error"
        await ws.send(json.dumps({"type": "subscribe", "filters": {"statuses": ["exploded"]}}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["type"] == "error"
        assert "statuses" in error["error"]


def test_event_payloads_stay_under_the_notify_limit_and_round_trip() -> None:
    events = [
        TaskEvent(f"id-{i}", "send_email", "completed", "2024-01-01T12:00:00Z") for i in range(1000)
    ]
    payloads = encode_events(events)
    assert len(payloads) > 1
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert [e for p in payloads for e in decode_events(p)] == events


async def test_a_subscriber_that_falls_behind_is_dropped_not_buffered(database_url: str) -> None:
    from tq_broker.connector import Connector, ConnectorConfig

    config = ConnectorConfig(database_url)
    hub = EventHub(Connector(config))
    slow = hub.subscribe([], [])
    keeping_up = hub.subscribe([], ["completed"])
    events = [TaskEvent(str(i), "t", "pending", "x") for i in range(1500)]
    hub.dispatch(events)
    assert slow.dropped
    assert slow.queue.qsize() == 1000
    assert not keeping_up.dropped
    hub.dispatch([TaskEvent("late", "t", "pending", "x")])
    assert slow.queue.qsize() == 1000, "a dropped subscriber kept receiving"
