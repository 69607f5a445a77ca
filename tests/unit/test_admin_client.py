"""`TaskQueueClient` / `AsyncTaskQueueClient` over a fake transport: the requests they build and
how they read answers and errors. The real broker is in tests/integration/test_admin_cli.py."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from tq_client import cli
from tq_client.client import (
    AsyncTaskQueueClient,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    TaskQueueClient,
    TaskQueueError,
    Unauthorized,
    Unavailable,
    Unreachable,
)
from tq_client.models import SubmitTaskRequest, TaskStatus

TASK_ID = "123e4567-e89b-12d3-a456-426614174000"
URL = "http://broker.test"
SUBMITTED = {"task_id": TASK_ID, "status": "pending"}
DEGRADED = {
    "status": "degraded",
    "is_leader": False,
    "connected_workers": None,
    "pending_tasks": None,
}

Responder = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A fake broker answering every request with one response, remembering the requests."""

    def __init__(self, status: int = 200, body: object = None, **headers: str) -> None:
        self.requests: list[httpx.Request] = []
        self.status, self.body, self.headers = status, body, headers

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.body is None:
            return httpx.Response(self.status, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def sync_client(responder: Responder, api_key: str | None = "secret") -> TaskQueueClient:
    return TaskQueueClient(URL, api_key, transport=httpx.MockTransport(responder))


def test_submit_sends_the_task_the_key_and_the_idempotency_key() -> None:
    broker = Recorder(201, SUBMITTED)
    with sync_client(broker) as client:
        submitted = client.submit(
            "send_email",
            b"user@example.com",
            priority=150,
            schedule_at=datetime(2030, 1, 1, tzinfo=UTC),
            idempotency_key="order-1",
        )
    assert (submitted.task_id.hex, submitted.status) == (TASK_ID.replace("-", ""), "pending")
    request = broker.last
    assert (request.method, request.url.path) == ("POST", "/api/v1/tasks")
    assert request.headers["Authorization"] == "Bearer secret"
    assert request.headers["Idempotency-Key"] == "order-1"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "task_type": "send_email",
        "payload": "dXNlckBleGFtcGxlLmNvbQ==",
        "priority": 150,
        "schedule_at": "2030-01-01T00:00:00Z",
    }


def test_an_idempotent_repeat_answered_200_is_a_success() -> None:
    with sync_client(Recorder(200, SUBMITTED)) as client:
        assert client.submit("noop").status == TaskStatus.PENDING


def test_no_key_means_no_authorization_header() -> None:
    broker = Recorder(200, [])
    with sync_client(broker, api_key=None) as client:
        client.list()
    assert "Authorization" not in broker.last.headers


def test_list_sends_only_the_filters_given() -> None:
    broker = Recorder(200, [])
    with sync_client(broker) as client:
        assert client.list(TaskStatus.PENDING, limit=10) == []
        client.list(task_type="send_email", offset=0)
    assert str(broker.requests[0].url) == f"{URL}/api/v1/tasks?status=pending&limit=10"
    assert str(broker.requests[1].url) == f"{URL}/api/v1/tasks?task_type=send_email&offset=0"


def test_queue_depth_repeats_task_type_in_the_query() -> None:
    broker = Recorder(200, {"task_types": ["a", "b"], "ready": 1, "scheduled": 0, "in_progress": 2})
    with sync_client(broker) as client:
        assert client.queue_depth(["a", "b"]).in_progress == 2
    assert broker.last.url.query == b"task_type=a&task_type=b"


def test_task_and_key_ids_cannot_escape_their_path_segment() -> None:
    broker = Recorder(204)
    with sync_client(broker) as client:
        client.revoke_key("../tasks")
    assert broker.last.url.raw_path == b"/api/v1/keys/..%2Ftasks"


def test_batch_submit_returns_the_tasks_in_request_order() -> None:
    broker = Recorder(201, {"tasks": [SUBMITTED, SUBMITTED]})
    with sync_client(broker) as client:
        answers = client.submit_batch([SubmitTaskRequest(task_type="a")] * 2)
    assert len(answers) == 2
    assert json.loads(broker.last.content) == {
        "tasks": [
            {
                "task_type": "a",
                "payload": "",
                "priority": 100,
            }
        ]
        * 2
    }


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, InvalidRequest),
        (415, InvalidRequest),
        (503, Unavailable),
        (500, TaskQueueError),
    ],
)
def test_error_statuses_raise_their_class_with_the_brokers_message(
    status: int, error: type[TaskQueueError]
) -> None:
    with (
        sync_client(Recorder(status, {"error": "the reason"})) as client,
        pytest.raises(error) as raised,
    ):
        client.get(TASK_ID)
    assert type(raised.value) is error
    assert (raised.value.status, raised.value.message) == (status, "the reason")


def test_rate_limited_carries_retry_after() -> None:
    broker = Recorder(429, {"error": "Rate limit exceeded"}, **{"Retry-After": "3"})
    with sync_client(broker) as client, pytest.raises(RateLimited) as raised:
        client.stats()
    assert raised.value.retry_after == 3.0


def test_an_error_without_the_contracts_body_keeps_its_text() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with sync_client(proxy) as client, pytest.raises(TaskQueueError) as raised:
        client.stats()
    assert (raised.value.status, raised.value.message) == (502, "<html>Bad Gateway</html>")


def test_an_unexpected_success_body_is_a_task_queue_error() -> None:
    with sync_client(Recorder(200, {"nope": 1})) as client, pytest.raises(TaskQueueError) as raised:
        client.stats()
    assert raised.value.message.startswith("unexpected answer from the broker")


def test_a_degraded_health_is_returned_not_raised() -> None:
    with sync_client(Recorder(503, DEGRADED)) as client:
        assert client.health().status == "degraded"


def test_a_503_health_that_is_not_the_brokers_report_is_raised() -> None:
    with (
        sync_client(Recorder(503, {"error": "upstream down"})) as client,
        pytest.raises(Unavailable),
    ):
        client.health()


def test_invalid_arguments_fail_before_anything_is_sent() -> None:
    broker = Recorder(201, SUBMITTED)
    with sync_client(broker) as client, pytest.raises(InvalidRequest) as raised:
        client.create_key("n", ["root"])
    assert raised.value.status is None
    assert raised.value.message.startswith("permissions.0: String should match pattern")
    assert broker.requests == []


def test_a_connection_failure_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with sync_client(refuse) as client, pytest.raises(Unreachable) as raised:
        client.workers()
    assert (raised.value.status, raised.value.message) == (None, f"broker unreachable at {URL}")
    assert isinstance(raised.value, Unavailable)


async def test_the_async_client_builds_the_same_requests_and_errors() -> None:
    broker = Recorder(404, {"error": f"task {TASK_ID} not found"})
    transport = httpx.MockTransport(broker)
    async with AsyncTaskQueueClient(URL, "secret", transport=transport) as client:
        with pytest.raises(NotFound):
            await client.cancel(TASK_ID)
        broker.status, broker.body = 503, DEGRADED
        assert (await client.health()).status == "degraded"
    assert [(r.method, r.url.path) for r in broker.requests] == [
        ("DELETE", f"/api/v1/tasks/{TASK_ID}"),
        ("GET", "/health"),
    ]
    assert broker.requests[0].headers["Authorization"] == "Bearer secret"


def test_cluster_status_of_a_degraded_broker_prints_the_table_and_exits_1() -> None:
    with sync_client(Recorder(503, DEGRADED)) as client:
        shown = cli.cmd_cluster_status(client, argparse.Namespace())
    assert shown.exit_code == cli.EXIT_API_ERROR
    assert shown.data is not None
