"""The gRPC API of a real broker process, driven by a client that knows nothing but the server:
it discovers `taskqueue.v1.TaskQueue` through server reflection and builds its messages from
the reflected descriptors (no generated stubs), as grpcurl does."""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tq_broker.embedded import EmbeddedPostgres

from ..conftest import create_database, drop_database
from ..support.processes import BrokerProcess, free_port

ADMIN = "grpc-admin-key-for-tests-0123456789abcdef"
SERVICE = "taskqueue.v1.TaskQueue"
PAYLOAD_LIMIT = 65536
REST_AUTH = {"Authorization": f"Bearer {ADMIN}"}
CALL_TIMEOUT = 10.0
DEMO_WORKER = [sys.executable, "-m", "tq_worker", "--app", "tq_worker.demo:worker"]
Code = grpc.StatusCode


class ReflectedClient:
    """TaskQueue as reflection describes it; requests and responses in proto JSON, as grpcurl."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=CALL_TIMEOUT)
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))
        self.service = self.pool.FindServiceByName(SERVICE)

    def close(self) -> None:
        self.channel.close()

    def _method(self, name: str, streaming: bool = False) -> Any:
        method = self.service.methods_by_name[name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        make = self.channel.unary_stream if streaming else self.channel.unary_unary
        callable_ = make(
            f"/{SERVICE}/{name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return request_class, callable_

    @staticmethod
    def _metadata(key: str | None, extra: dict[str, str] | None) -> list[tuple[str, str]]:
        metadata = [("authorization", f"Bearer {key}")] if key else []
        return metadata + list((extra or {}).items())

    def call(
        self,
        name: str,
        body: dict[str, Any] | None = None,
        key: str | None = ADMIN,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        request_class, callable_ = self._method(name)
        request = json_format.ParseDict(body or {}, request_class())
        response = callable_(request, metadata=self._metadata(key, metadata), timeout=CALL_TIMEOUT)
        return json_format.MessageToDict(response, preserving_proto_field_name=True)

    def stream(self, body: dict[str, Any], key: str | None = ADMIN) -> Updates:
        request_class, callable_ = self._method("StreamTaskUpdates", streaming=True)
        request = json_format.ParseDict(body, request_class())
        return Updates(callable_(request, metadata=self._metadata(key, None), timeout=120))


class Updates:
    """A server stream read by a thread, so that every wait for the next update is bounded."""

    END = object()

    def __init__(self, call: Any) -> None:
        self.call = call
        self._queue: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                update = json_format.MessageToDict(message, preserving_proto_field_name=True)
                self._queue.put(update)
            self._queue.put(self.END)
        except grpc.RpcError as exc:
            self._queue.put(exc)

    def next(self, timeout: float) -> Any:
        """The next update, END when the stream ended with OK; raises queue.Empty, RpcError."""
        item = self._queue.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def status_at_end(self, within: float) -> grpc.StatusCode:
        """Skip updates until the stream ends; its status code (OK for a clean end)."""
        deadline = time.monotonic() + within
        while True:
            try:
                if self.next(max(0.0, deadline - time.monotonic())) is self.END:
                    return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

    def cancel(self) -> None:
        self.call.cancel()


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@contextlib.contextmanager
def secured_broker(database_url: str, logs: Path) -> Iterator[tuple[BrokerProcess, int]]:
    """Auth on, a small payload limit; the gRPC port given on the command line."""
    grpc_port = free_port()
    env = {
        "TQ_AUTH": "on",
        "TQ_ADMIN_API_KEY": ADMIN,
        "TQ_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT),
        # The flood test batches 5,000 tasks in a few seconds; a batch costs a token per task.
        "TQ_RATE_LIMIT_PER_SECOND": "100000",
        "TQ_RATE_LIMIT_BURST": "100000",
    }
    process = BrokerProcess(
        ["--database-url", database_url, "--grpc-port", str(grpc_port)],
        logs / "broker.log",
        env=env,
    ).start()
    try:
        yield process, grpc_port
    finally:
        process.stop()


@contextlib.contextmanager
def demo_worker(broker: BrokerProcess, logs: Path) -> Iterator[None]:
    with open(logs / "worker.log", "wb") as log:
        process = subprocess.Popen(
            [*DEMO_WORKER, "--broker-url", broker.url],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TQ_API_KEY": ADMIN},
        )
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


@contextlib.contextmanager
def reflected(port: int) -> Iterator[ReflectedClient]:
    client = ReflectedClient(port)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def shared(
    pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BrokerProcess, ReflectedClient]]:
    """One broker with a demo worker for the tests that do not count rows (starting a broker
    takes seconds); tasks they leave behind are of their own types."""
    database = create_database(pg)
    logs = tmp_path_factory.mktemp("grpc-shared")
    try:
        with (
            secured_broker(pg.url(database), logs) as (broker, port),
            demo_worker(broker, logs),
            reflected(port) as client,
        ):
            yield broker, client
    finally:
        drop_database(pg, database)


@pytest.fixture
def shared_client(shared: tuple[BrokerProcess, ReflectedClient]) -> ReflectedClient:
    return shared[1]


@pytest.fixture
def own(database_url: str, tmp_path: Path) -> Iterator[tuple[BrokerProcess, ReflectedClient]]:
    """A broker of the test's own (on its own database), without a worker."""
    with secured_broker(database_url, tmp_path) as (broker, port), reflected(port) as client:
        yield broker, client


def create_key(broker: BrokerProcess, permissions: list[str], **limits: Any) -> str:
    response = httpx.post(
        f"{broker.url}/api/v1/keys",
        headers=REST_AUTH,
        json={"name": "grpc-test", "permissions": permissions, **limits},
        timeout=CALL_TIMEOUT,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_reflection_shows_the_rpcs_and_health_is_serving_without_a_key(
    shared_client: ReflectedClient,
) -> None:
    methods = shared_client.service.methods_by_name
    assert set(methods) == {
        "SubmitTask",
        "GetTaskStatus",
        "CancelTask",
        "ListTasks",
        "StreamTaskUpdates",
        "GetStats",
        "AbortTask",
    }
    assert methods["StreamTaskUpdates"].server_streaming
    health = health_pb2_grpc.HealthStub(shared_client.channel)
    for service in ("", SERVICE):
        response = health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_submit_get_list_cancel_and_stats_mirror_the_rest_api(
    own: tuple[BrokerProcess, ReflectedClient],
) -> None:
    broker, client = own
    # The contract's grpcurl example, payload as base64 in JSON.
    submitted = client.call(
        "SubmitTask",
        {"task_type": "send_email", "payload": "dXNlckBleGFtcGxlLmNvbQ==", "priority": 150},
    )
    assert submitted["status"] == "pending"
    task_id = submitted["task_id"]
    task = client.call("GetTaskStatus", {"task_id": task_id})
    assert task["task_id"] == task_id
    assert (task["task_type"], task["status"], task["priority"]) == ("send_email", "pending", 150)
    assert task["created_at"].endswith("Z") and "updated_at" in task
    assert "result" not in task and "worker_id" not in task  # empty: none yet
    rest = httpx.get(
        f"{broker.url}/api/v1/tasks/{task_id}", headers=REST_AUTH, timeout=CALL_TIMEOUT
    ).json()
    assert (rest["task_id"], rest["priority"], rest["status"]) == (task_id, 150, "pending")

    other = client.call("SubmitTask", {"task_type": "resize", "priority": 220})["task_id"]
    listed = client.call("ListTasks", {"status": "pending", "limit": 1})["tasks"]
    assert [t["task_id"] for t in listed] == [other]  # newest first, limited
    by_type = client.call("ListTasks", {"task_type": "send_email"})["tasks"]
    assert [t["task_id"] for t in by_type] == [task_id]

    stats = client.call("GetStats")
    assert stats["pending_count"] == "2"  # uint64 travels as a string in proto JSON
    assert stats["queue_depth_by_priority"] == {"high": "1", "normal": "1"}  # low: 0, omitted
    rest_stats = httpx.get(
        f"{broker.url}/api/v1/stats", headers=REST_AUTH, timeout=CALL_TIMEOUT
    ).json()
    assert rest_stats["pending_count"] == 2
    assert rest_stats["queue_depth_by_priority"] == {"high": 1, "normal": 1, "low": 0}

    cancelled = client.call("CancelTask", {"task_id": task_id})
    assert cancelled == {"task_id": task_id, "status": "cancelled"}
    assert client.call("GetTaskStatus", {"task_id": task_id})["status"] == "cancelled"
    assert code_of(lambda: client.call("CancelTask", {"task_id": task_id})) == (
        Code.FAILED_PRECONDITION
    )


def test_abort_task_cancels_a_waiting_task_and_stops_a_running_one_with_progress_shown(
    own: tuple[BrokerProcess, ReflectedClient],
) -> None:
    broker, client = own
    rest = httpx.Client(base_url=broker.url, headers=REST_AUTH, timeout=CALL_TIMEOUT)
    waiting = client.call("SubmitTask", {"task_type": "slow"})["task_id"]
    answer = client.call("AbortTask", {"task_id": waiting})
    assert (answer["status"], answer["aborted_by"]) == ("cancelled", "bootstrap-admin")
    assert answer["aborted_at"].endswith("Z")

    worker = "worker-grpc-1-abcdef"
    registered = rest.post(
        "/api/v1/workers", json={"worker_id": worker, "task_types": ["slow"], "concurrency": 1}
    )
    assert registered.status_code == 201, registered.text
    task_id = client.call("SubmitTask", {"task_type": "slow"})["task_id"]
    (claimed,) = rest.post("/api/v1/tasks/claim", json={"worker_id": worker}).json()["tasks"]
    updates = client.stream({"task_id": task_id})
    assert updates.next(CALL_TIMEOUT)["status"] == "in_progress"  # its current status first
    lease = {"task_id": task_id, "lease_token": claimed["lease_token"]}
    progress = {"task_id": task_id, "fraction": 0.5, "message": "half"}
    beat = rest.post(
        f"/api/v1/workers/{worker}/heartbeat", json={"leases": [lease], "progress": [progress]}
    )
    assert beat.status_code == 200, beat.text
    update = updates.next(CALL_TIMEOUT)
    assert (update["progress"]["fraction"], update["progress"]["message"]) == (0.5, "half")

    stopping = client.call("AbortTask", {"task_id": task_id})
    assert stopping["status"] == "in_progress"
    marked = updates.next(CALL_TIMEOUT)
    assert (marked["status"], marked["aborted_at"]) == ("in_progress", stopping["aborted_at"])
    shown = client.call("GetTaskStatus", {"task_id": task_id})
    assert shown["progress"]["message"] == "half"
    assert (shown["aborted_at"], shown["aborted_by"]) == (stopping["aborted_at"], "bootstrap-admin")
    failed = rest.post(
        "/api/v1/tasks/fail",
        json={"worker_id": worker, "tasks": [{**lease, "error": "CancelledError: aborted"}]},
    )
    assert failed.status_code == 200, failed.text
    assert updates.next(CALL_TIMEOUT)["status"] == "cancelled"
    assert updates.next(CALL_TIMEOUT) is Updates.END  # a one-task stream ends with its task

    assert code_of(lambda: client.call("AbortTask", {"task_id": task_id})) == (
        Code.FAILED_PRECONDITION
    )
    unknown = str(uuid.uuid4())
    assert code_of(lambda: client.call("AbortTask", {"task_id": unknown})) == Code.NOT_FOUND
    assert code_of(lambda: client.call("AbortTask", {"task_id": "x"})) == Code.INVALID_ARGUMENT
    rest.close()


def test_unset_submit_fields_take_the_rest_defaults_and_set_zeros_are_kept(
    own: tuple[BrokerProcess, ReflectedClient], db: psycopg.Connection[dict[str, Any]]
) -> None:
    _, client = own
    defaults = client.call("SubmitTask", {"task_type": "noop"})["task_id"]
    zeros = client.call("SubmitTask", {"task_type": "noop", "priority": 0, "max_retries": 0})
    rows = {
        str(row["task_id"]): row
        for row in db.execute(
            "SELECT task_id, priority, timeout_seconds, max_retries FROM tq_tasks"
        ).fetchall()
    }
    assert rows[defaults]["priority"] == 100
    assert (rows[defaults]["timeout_seconds"], rows[defaults]["max_retries"]) == (300, 3)
    assert (rows[zeros["task_id"]]["priority"], rows[zeros["task_id"]]["max_retries"]) == (0, 0)
    assert code_of(
        lambda: client.call("SubmitTask", {"task_type": "noop", "timeout_seconds": 0})
    ) == (Code.INVALID_ARGUMENT)


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("SubmitTask", {"task_type": ""}, "task_type"),
        ("SubmitTask", {"task_type": "has space"}, "task_type"),
        ("SubmitTask", {"task_type": "noop", "priority": 256}, "priority"),
        ("SubmitTask", {"task_type": "noop", "max_retries": 101}, "max_retries"),
        ("SubmitTask", {"task_type": "noop", "timeout_seconds": 86401}, "timeout_seconds"),
        ("GetTaskStatus", {"task_id": "not-a-uuid"}, "task_id"),
        ("CancelTask", {"task_id": ""}, "task_id"),
        ("ListTasks", {"status": "exploded"}, "status"),
        ("ListTasks", {"task_type": "bad type"}, "task_type"),
        ("ListTasks", {"limit": 1001}, "limit"),
    ],
)
def test_invalid_input_is_invalid_argument_naming_the_field(
    shared_client: ReflectedClient, method: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shared_client.call(method, body)
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert field in raised.value.details()


def test_invalid_stream_filters_and_idempotency_keys_are_invalid_argument(
    shared_client: ReflectedClient,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shared_client.stream({"statuses": ["exploded"]}).next(CALL_TIMEOUT)
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert "statuses" in raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        shared_client.call("SubmitTask", {"task_type": "idle"}, metadata={"idempotency-key": "a b"})
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert "idempotency-key" in raised.value.details()


def test_unknown_tasks_are_not_found_and_big_payloads_resource_exhausted(
    shared_client: ReflectedClient,
) -> None:
    client = shared_client
    unknown = str(uuid.uuid4())
    assert code_of(lambda: client.call("GetTaskStatus", {"task_id": unknown})) == Code.NOT_FOUND
    assert code_of(lambda: client.call("CancelTask", {"task_id": unknown})) == Code.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        client.stream({"task_id": unknown}).next(CALL_TIMEOUT)
    assert raised.value.code() == Code.NOT_FOUND
    for size in (PAYLOAD_LIMIT + 1, 4 * PAYLOAD_LIMIT):  # over the limit; over the message cap
        body = {"task_type": "idle", "payload": b64(b"x" * size)}
        assert code_of(lambda body=body: client.call("SubmitTask", body)) == (
            Code.RESOURCE_EXHAUSTED
        )


def test_idempotency_key_metadata_returns_the_first_task(shared_client: ReflectedClient) -> None:
    client = shared_client
    key = {"idempotency-key": f"order-{uuid.uuid4()}"}
    first = client.call("SubmitTask", {"task_type": "idle"}, metadata=key)
    assert client.call("SubmitTask", {"task_type": "idle"}, metadata=key) == first
    assert code_of(lambda: client.call("SubmitTask", {"task_type": "echo"}, metadata=key)) == (
        Code.FAILED_PRECONDITION
    )


def test_keys_are_checked_like_rest(shared: tuple[BrokerProcess, ReflectedClient]) -> None:
    broker, client = shared
    task_id = client.call("SubmitTask", {"task_type": "idle"})["task_id"]
    calls: dict[str, tuple[str, dict[str, Any]]] = {
        "submit_tasks": ("SubmitTask", {"task_type": "idle"}),
        "read_tasks": ("GetTaskStatus", {"task_id": task_id}),
        "cancel_tasks": ("CancelTask", {"task_id": task_id}),
    }
    reads = [("ListTasks", {}), ("GetStats", {})]
    for method, body in [*calls.values(), *reads]:
        assert code_of(lambda m=method, b=body: client.call(m, b, key=None)) == (
            Code.UNAUTHENTICATED
        )
        assert code_of(lambda m=method, b=body: client.call(m, b, key="tq_unknown_key")) == (
            Code.UNAUTHENTICATED
        )
    with pytest.raises(grpc.RpcError) as raised:
        client.stream({}, key=None).next(CALL_TIMEOUT)
    assert raised.value.code() == Code.UNAUTHENTICATED

    submitter = create_key(broker, ["submit_tasks"])
    assert client.call(*calls["submit_tasks"], key=submitter)["status"] == "pending"
    for method, body in [calls["read_tasks"], calls["cancel_tasks"], *reads]:
        assert code_of(lambda m=method, b=body: client.call(m, b, key=submitter)) == (
            Code.PERMISSION_DENIED
        )
    with pytest.raises(grpc.RpcError) as raised:
        client.stream({}, key=submitter).next(CALL_TIMEOUT)
    assert raised.value.code() == Code.PERMISSION_DENIED

    reader = create_key(broker, ["read_tasks"])
    assert client.call(*calls["read_tasks"], key=reader)["status"] == "pending"
    assert code_of(lambda: client.call(*calls["cancel_tasks"], key=reader)) == (
        Code.PERMISSION_DENIED
    )
    canceller = create_key(broker, ["cancel_tasks"])
    assert client.call(*calls["cancel_tasks"], key=canceller)["status"] == "cancelled"


def test_a_key_over_its_rate_limit_is_resource_exhausted_with_retry_after(
    shared: tuple[BrokerProcess, ReflectedClient],
) -> None:
    broker, client = shared
    slow = create_key(broker, ["read_tasks"], rate_limit=0.01, burst=1)
    client.call("GetStats", key=slow)
    with pytest.raises(grpc.RpcError) as raised:
        client.call("GetStats", key=slow)
    assert raised.value.code() == Code.RESOURCE_EXHAUSTED
    trailers = dict(raised.value.trailing_metadata() or ())
    assert int(trailers["retry-after"]) >= 1


def wait_until_live(client: ReflectedClient, updates: Updates, task_type: str) -> None:
    """Publishers notice a new subscriber within about a second: probe until one arrives."""
    probes: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probes.add(client.call("SubmitTask", {"task_type": task_type})["task_id"])
        try:
            update = updates.next(0.5)
        except queue.Empty:
            continue
        if update is not Updates.END and update["task_id"] in probes:
            return
    pytest.fail("no update reached the subscriber")


def test_stream_delivers_filtered_updates_of_tasks_a_real_worker_processes(
    shared_client: ReflectedClient,
) -> None:
    client = shared_client
    updates = client.stream({"task_types": ["echo"], "statuses": ["completed"]})
    try:
        wait_until_live(client, updates, "echo")
        ignored = client.call("SubmitTask", {"task_type": "noop"})["task_id"]
        wanted = {
            client.call("SubmitTask", {"task_type": "echo", "payload": b64(b"hi")})["task_id"]
            for _ in range(5)
        }
        seen: dict[str, dict[str, Any]] = {}
        while not wanted <= set(seen):
            update = updates.next(15)
            seen[update["task_id"]] = update
        assert ignored not in seen
        assert all(u["status"] == "completed" and u["task_type"] == "echo" for u in seen.values())
        assert all(u["updated_at"].endswith("Z") for u in seen.values())
    finally:
        updates.cancel()


def test_stream_filtered_by_task_ids_delivers_only_those_tasks(
    shared_client: ReflectedClient,
) -> None:
    client = shared_client
    first, second, other = (
        client.call("SubmitTask", {"task_type": "idle"})["task_id"] for _ in "abc"
    )
    updates = client.stream({"task_ids": [first, second.upper()]})  # any UUID spelling
    try:
        # Live once the initial metadata arrived: every later change reaches the stream.
        assert dict(updates.call.initial_metadata()).get("tq-subscribed") == "true"
        for task_id in (other, first, second):
            client.call("CancelTask", {"task_id": task_id})
        # (The submits' own events may arrive too: they are sent after the stream went live.)
        seen: list[tuple[str, str]] = []
        while (second, "cancelled") not in seen:
            update = updates.next(15)
            seen.append((update["task_id"], update["status"]))
        assert {task_id for task_id, _ in seen} == {first, second}
        assert [u for u in seen if u[1] == "cancelled"] == [
            (first, "cancelled"),
            (second, "cancelled"),
        ]
    finally:
        updates.cancel()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"task_ids": ["not-a-uuid"]}, "task_ids"),
        ({"task_ids": [str(uuid.uuid4()) for _ in range(1001)]}, "at most 1000"),
        ({"task_id": str(uuid.uuid4()), "task_ids": [str(uuid.uuid4())]}, "not both"),
    ],
)
def test_bad_task_ids_filters_are_invalid_argument(
    shared_client: ReflectedClient, body: dict[str, Any], needle: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        shared_client.stream(body).next(CALL_TIMEOUT)
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert needle in raised.value.details()


def test_stream_of_one_task_follows_it_until_it_is_finished(
    shared_client: ReflectedClient,
) -> None:
    client = shared_client
    task_id = client.call("SubmitTask", {"task_type": "sleep", "payload": b64(b"1")})["task_id"]
    updates = client.stream({"task_id": task_id})
    statuses = []
    while (update := updates.next(30)) is not Updates.END:
        assert update["task_id"] == task_id
        statuses.append(update["status"])
    assert statuses[-1] == "completed"
    assert set(statuses) <= {"pending", "in_progress", "completed"}
    assert client.call("GetTaskStatus", {"task_id": task_id})["status"] == "completed"


def test_stream_of_one_task_ends_when_it_is_cancelled(shared_client: ReflectedClient) -> None:
    client = shared_client
    task_id = client.call("SubmitTask", {"task_type": "idle"})["task_id"]
    updates = client.stream({"task_id": task_id})
    assert updates.next(CALL_TIMEOUT)["status"] == "pending"  # its status when the stream began
    client.call("CancelTask", {"task_id": task_id})
    assert updates.next(30)["status"] == "cancelled"  # live, or from the periodic re-read
    assert updates.next(CALL_TIMEOUT) is Updates.END


def test_a_subscriber_that_does_not_read_is_dropped_with_resource_exhausted(
    own: tuple[BrokerProcess, ReflectedClient],
) -> None:
    broker, client = own
    updates = client.stream({"task_types": ["flood"]})
    try:
        wait_until_live(client, updates, "flood")
        batch = {"tasks": [{"task_type": "flood"} for _ in range(1000)]}
        for _ in range(5):  # far more events than a subscriber's queue holds, in bursts
            response = httpx.post(
                f"{broker.url}/api/v1/tasks/batch", headers=REST_AUTH, json=batch, timeout=30
            )
            assert response.status_code == 201
        assert updates.status_at_end(30) == Code.RESOURCE_EXHAUSTED
    finally:
        updates.cancel()


def test_sigterm_ends_open_streams_and_the_broker_exits_promptly(
    own: tuple[BrokerProcess, ReflectedClient],
) -> None:
    broker, client = own
    updates = client.stream({})
    wait_until_live(client, updates, "idle")
    started = time.monotonic()
    broker.signal(signal.SIGTERM)
    assert updates.status_at_end(CALL_TIMEOUT) == Code.UNAVAILABLE
    assert broker.process is not None
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert broker.process.wait(20) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 8, "open streams held the shutdown"
    assert "Finished server process" in broker.log()


def test_grpc_port_from_the_environment_and_no_key_needed_with_auth_off(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {"TQ_GRPC_PORT": str(port)}  # auth off: BrokerProcess's default
    process = BrokerProcess(["--database-url", database_url], tmp_path / "b.log", env=env).start()
    try:
        with reflected(port) as client:
            task_id = client.call("SubmitTask", {"task_type": "idle"}, key=None)["task_id"]
            task = client.call("GetTaskStatus", {"task_id": task_id}, key=None)
            assert task["status"] == "pending"
    finally:
        process.stop()


def test_a_taken_grpc_port_stops_the_broker_with_an_error(
    database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = BrokerProcess(
            ["--database-url", database_url, "--grpc-port", str(port)], tmp_path / "b.log"
        ).start(wait=False)
        assert process.process is not None
        try:
            assert process.process.wait(60) == 1
        finally:
            process.stop()
    assert "gRPC API not started" in process.log_path.read_text()  # above the traceback


def test_a_cancelled_stream_unsubscribes(
    own: tuple[BrokerProcess, ReflectedClient], db: psycopg.Connection[dict[str, Any]]
) -> None:
    _, client = own
    updates = client.stream({})
    wait_until_live(client, updates, "idle")
    assert db.execute("SELECT count(*) AS n FROM tq_event_listeners").fetchone() == {"n": 1}
    updates.cancel()
    deadline = time.monotonic() + 15  # the hub renews or withdraws its registration every 3 s
    while db.execute("SELECT count(*) AS n FROM tq_event_listeners").fetchone() != {"n": 0}:
        assert time.monotonic() < deadline, "the broker kept listening for a cancelled stream"
        time.sleep(0.1)
