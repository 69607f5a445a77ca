"""Races found by black-box runs, each with real processes: a stopped worker must not claim, a
`subscribed` stream must see every later change, and an idle claim must not be woken by work it
cannot take."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
import websockets

from tq_broker.embedded import EmbeddedPostgres
from tq_broker.rpc import taskqueue_pb2 as pb
from tq_broker.rpc import taskqueue_pb2_grpc as pb_grpc

from ..support.polling import eventually
from ..support.processes import FAST_BROKER_ENV, BrokerProcess, WorkerProcess, free_port

UPDATE_WITHIN_SECONDS = 5.0
IDLE_CLAIMS = 200
HERD_SUBMITS = 250
HERD_SUBMIT_RATE = 50.0  # per second
# PostgreSQL flushes an idle backend's statistics within 10 s (PGSTAT_IDLE_INTERVAL).
STATS_SETTLE_SECONDS = 11.0


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def work_payload(key: str) -> str:
    return base64.b64encode(json.dumps({"key": key, "sleep": 0}).encode()).decode()


def online_workers(url: str) -> list[str]:
    return [w["worker_id"] for w in httpx.get(f"{url}/api/v1/workers", timeout=5).json()]


# -- a stopped worker never claims ----------------------------------------------------------


def test_worker_stopped_while_idle_costs_no_attempt(database_url: str, workdir: Path) -> None:
    """SIGTERM while the worker's long-poll waits at the broker, then a task with no retries:
    the next worker runs it. On the old broker the dead worker's open claim took it, and with
    max_retries 0 the lease expiry dead-lettered a task that never ran."""
    broker = BrokerProcess(
        ["--database-url", database_url], workdir / "broker.log", env=FAST_BROKER_ENV
    ).start()
    first = second = None
    try:
        first = WorkerProcess(
            broker.url,
            "tests.support.fault_app:worker",
            workdir / "executions.log",
            workdir / "worker-1.log",
            concurrency=1,
        ).start()
        eventually(lambda: len(online_workers(broker.url)) == 1, 30, "the first worker")
        (stopped_id,) = online_workers(broker.url)
        time.sleep(0.5)  # its claim loop starts right after registration: now it waits
        first.signal(signal.SIGTERM)
        first.wait_exit(15)
        assert online_workers(broker.url) == []

        response = httpx.post(
            f"{broker.url}/api/v1/tasks",
            json={"task_type": "work", "payload": work_payload("after-stop"), "max_retries": 0},
        )
        assert response.status_code == 201
        task_id = response.json()["task_id"]

        second = WorkerProcess(
            broker.url,
            "tests.support.fault_app:worker",
            workdir / "executions.log",
            workdir / "worker-2.log",
            concurrency=1,
        ).start()
        eventually(lambda: len(online_workers(broker.url)) == 1, 30, "the second worker")
        registered = time.monotonic()

        def task() -> dict[str, object]:
            return dict(httpx.get(f"{broker.url}/api/v1/tasks/{task_id}", timeout=5).json())

        eventually(lambda: task()["status"] in ("completed", "dead_letter"), 30, "the task to end")
        ended = time.monotonic()
        final = task()
        assert final["status"] == "completed", f"{final}\n{broker.log()}"
        assert final["retry_count"] == 0
        assert final["worker_id"] != stopped_id
        assert ended - registered < 2.0, f"took {ended - registered:.1f}s after registration"
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        broker.stop()


def test_a_claim_whose_client_hung_up_takes_nothing(database_url: str, workdir: Path) -> None:
    """A worker killed mid long-poll (or its connection cut) leaves no claim behind."""
    broker = BrokerProcess(["--database-url", database_url], workdir / "broker.log").start()
    try:
        with httpx.Client(base_url=broker.url) as http:
            worker = {"worker_id": "hung-up", "task_types": ["work"], "concurrency": 1}
            assert http.post("/api/v1/workers", json=worker).status_code == 201
            with pytest.raises(httpx.ReadTimeout):
                http.post(
                    "/api/v1/tasks/claim",
                    json={"worker_id": "hung-up", "wait_seconds": 20},
                    timeout=0.5,
                )
            time.sleep(0.5)  # the broker notices the closed connection
            task_id = http.post("/api/v1/tasks", json={"task_type": "work"}).json()["task_id"]
            time.sleep(1.0)
            task = http.get(f"/api/v1/tasks/{task_id}").json()
            assert task["status"] == "pending", f"taken by a claim nobody waits for: {task}"
            claimed = http.post("/api/v1/tasks/claim", json={"worker_id": "hung-up"}).json()
            assert [t["task_id"] for t in claimed["tasks"]] == [task_id]
    finally:
        broker.stop()


# -- subscribed means subscribed ------------------------------------------------------------


@pytest.fixture
def two_replicas(database_url: str, workdir: Path) -> Iterator[list[BrokerProcess]]:
    brokers = [
        BrokerProcess(
            ["--database-url", database_url],
            workdir / f"broker-{n}.log",
            env={"TQ_GRPC_PORT": str(free_port())},
        )
        for n in range(2)
    ]
    try:
        for broker in brokers:
            broker.start()
        yield brokers
    finally:
        for broker in brokers:
            broker.stop()


async def _subscribe_then_submit(listener: BrokerProcess, submitter: BrokerProcess) -> str | None:
    """Subscribe on one replica, submit on the other at once; the update's status, if any."""
    task_type = f"sub-{uuid.uuid4().hex[:12]}"
    ws_url = listener.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws_url) as ws, httpx.AsyncClient(base_url=submitter.url) as http:
        await ws.send(json.dumps({"type": "subscribe", "filters": {"task_types": [task_type]}}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        response = await http.post("/api/v1/tasks", json={"task_type": task_type})
        assert response.status_code == 201
        task_id = response.json()["task_id"]
        try:
            async with asyncio.timeout(UPDATE_WITHIN_SECONDS):
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "task_update" and message["task"]["task_id"] == task_id:
                        return str(message["task"]["status"])
        except TimeoutError:
            return None


async def _steady_traffic(url: str, stop: asyncio.Event) -> None:
    """Unrelated submits on the publishing replica, as on any busy broker."""
    async with httpx.AsyncClient(base_url=url) as http:
        while not stop.is_set():
            await http.post("/api/v1/tasks", json={"task_type": "unrelated"})
            await asyncio.sleep(0.05)


async def test_websocket_subscriber_sees_every_later_change(
    two_replicas: list[BrokerProcess],
) -> None:
    """Subscribe on one replica, submit on the other: 50 times in a row, each after the last
    subscriber had gone for a moment (so no replica can rely on an earlier subscription)."""
    listener, submitter = two_replicas
    stop = asyncio.Event()
    traffic = asyncio.create_task(_steady_traffic(submitter.url, stop))
    missed = []
    try:
        for attempt in range(50):
            await asyncio.sleep(0.5)
            status = await _subscribe_then_submit(listener, submitter)
            if status != "pending":
                missed.append((attempt, status))
    finally:
        stop.set()
        await traffic
    assert missed == [], f"updates missed after 'subscribed': {missed}"


def _grpc_port(broker: BrokerProcess) -> int:
    return int(broker.env["TQ_GRPC_PORT"])


def test_grpc_stream_sees_every_change_after_its_initial_metadata(
    two_replicas: list[BrokerProcess],
) -> None:
    """A stream is live once its initial metadata arrives (`tq-subscribed: true`)."""
    listener, submitter = two_replicas
    with grpc.insecure_channel(f"127.0.0.1:{_grpc_port(listener)}") as channel:
        stub = pb_grpc.TaskQueueStub(channel)
        missed = []
        for attempt in range(20):
            task_type = f"grpc-{uuid.uuid4().hex[:12]}"
            call = stub.StreamTaskUpdates(
                pb.StreamTaskUpdatesRequest(task_types=[task_type]), timeout=30
            )
            assert ("tq-subscribed", "true") in tuple(call.initial_metadata())
            response = httpx.post(f"{submitter.url}/api/v1/tasks", json={"task_type": task_type})
            task_id = response.json()["task_id"]
            got = None
            deadline = time.monotonic() + UPDATE_WITHIN_SECONDS
            for update in call:
                if update.task_id == task_id:
                    got = update.status
                    break
                if time.monotonic() > deadline:
                    break
            call.cancel()
            if got != "pending":
                missed.append((attempt, got))
    assert missed == [], f"updates missed after the initial metadata: {missed}"


# -- no thundering herd ---------------------------------------------------------------------


def _commits(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _submit_steadily(url: str, task_type: str) -> None:
    with httpx.Client(base_url=url) as client:
        started = time.monotonic()
        for n in range(HERD_SUBMITS):
            response = client.post("/api/v1/tasks", json={"task_type": task_type})
            assert response.status_code == 201
            delay = started + (n + 1) / HERD_SUBMIT_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _measured_window(conninfo: str, url: str, task_type: str) -> int:
    before = _commits(conninfo)
    _submit_steadily(url, task_type)
    time.sleep(STATS_SETTLE_SECONDS)
    return _commits(conninfo) - before


@contextlib.contextmanager
def idle_claims(url: str) -> Iterator[None]:
    """IDLE_CLAIMS workers of another type, each with one long-poll waiting at the broker."""
    ready, stop = threading.Event(), threading.Event()

    async def claim_until_stopped(client: httpx.AsyncClient, worker_id: str) -> None:
        while not stop.is_set():
            await client.post(
                "/api/v1/tasks/claim",
                json={"worker_id": worker_id, "max_tasks": 1, "wait_seconds": 60},
            )

    async def main() -> None:
        limits = httpx.Limits(max_connections=IDLE_CLAIMS + 10)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
            ids = [f"idle-{n}-{uuid.uuid4().hex[:8]}" for n in range(IDLE_CLAIMS)]
            for worker_id in ids:
                response = await client.post(
                    "/api/v1/workers",
                    json={"worker_id": worker_id, "task_types": ["idle-type"], "concurrency": 1},
                )
                assert response.status_code == 201
            claims = [asyncio.create_task(claim_until_stopped(client, w)) for w in ids]
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            for claim in claims:
                claim.cancel()
            await asyncio.gather(*claims, return_exceptions=True)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        eventually(ready.is_set, 60, "the idle claims")
        yield
    finally:
        stop.set()
        thread.join(60)


def test_idle_claims_of_another_type_are_not_woken(
    pg: EmbeddedPostgres, database: str, workdir: Path
) -> None:
    """Transactions while submitting steadily, with and without 200 idle claims of another type:
    the claims must cost the database next to nothing (they used to be woken by every task)."""
    url = pg.url(database)
    conninfo = pg.conninfo(database)
    broker = BrokerProcess(
        ["--database-url", url],
        workdir / "broker.log",
        env={"TQ_CLAIM_WAIT_MAX_SECONDS": "60"},
    ).start()
    try:
        baseline = _measured_window(conninfo, broker.url, "busy-type")
        with idle_claims(broker.url):
            time.sleep(STATS_SETTLE_SECONDS)  # their first claim statements land before the window
            with_claims = _measured_window(conninfo, broker.url, "busy-type")
    finally:
        broker.stop()
    ratio = with_claims / baseline
    print(f"transactions: {baseline} without claims, {with_claims} with {IDLE_CLAIMS} idle claims")
    assert ratio < 2.0, (
        f"{IDLE_CLAIMS} idle claims of another type multiplied transactions by {ratio:.1f} "
        f"({baseline} -> {with_claims})"
    )
