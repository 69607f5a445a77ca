"""`submit(json=…)`, the bytes-only `payload=`, and `wait()`'s loop of long-polls, over a
recording transport (the real broker: tests/integration/test_sdk.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tq_client import AsyncTaskQueueClient, TaskQueueClient, task_request
from tq_client.errors import Unreachable
from tq_client.payloads import decode_json, encode_json, payload_bytes
from tq_client.waiting import WaitPlan, WaitTimeout

TASK_ID = "123e4567-e89b-12d3-a456-426614174000"
URL = "http://broker.test"


def task_body(status: str, result: bytes | None = None) -> dict[str, Any]:
    return {
        "task_id": TASK_ID,
        "task_type": "resize",
        "status": status,
        "priority": 100,
        "created_at": "2030-01-01T00:00:00Z",
        "updated_at": "2030-01-01T00:00:00Z",
        "result": None if result is None else base64.b64encode(result).decode(),
    }


class Broker:
    """Answers submits with 201 and task reads with the statuses given, in turn."""

    def __init__(self, *statuses: str) -> None:
        self.requests: list[httpx.Request] = []
        self.statuses = list(statuses)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"task_id": TASK_ID, "status": "pending"})
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(200, json=task_body(status, b'{"ok":true}'))


@pytest.mark.parametrize("payload", ["hello", "aGk=", {"a": 1}, ["x"], 3, 1.5])
def test_a_payload_that_is_not_bytes_raises_type_error_before_any_request(payload: Any) -> None:
    broker = Broker("pending")
    with TaskQueueClient(URL, transport=httpx.MockTransport(broker)) as client:
        with pytest.raises(TypeError, match=r"payload must be bytes.*json="):
            client.submit("resize", payload)
        with pytest.raises(TypeError, match=r"payload must be bytes.*json="):
            client.submit("resize", payload=payload)
    assert broker.requests == []


async def test_the_async_client_refuses_the_same_before_any_request() -> None:
    broker = Broker("pending")
    async with AsyncTaskQueueClient(URL, transport=httpx.MockTransport(broker)) as client:
        with pytest.raises(TypeError, match=r"payload must be bytes.*json="):
            await client.submit("resize", "hello")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not JSON-serializable"):
            await client.submit("resize", json={"when": object()})
        with pytest.raises(TypeError, match=r"either payload= .* or json="):
            await client.submit("resize", b"x", json={})
    assert broker.requests == []


def test_json_is_sent_as_compact_utf8_json_in_the_base64_payload() -> None:
    broker = Broker("pending")
    with TaskQueueClient(URL, transport=httpx.MockTransport(broker)) as client:
        client.submit("resize", json={"path": "é.png", "width": 640})
        client.submit("resize", json=None)
    bodies = [json.loads(r.content) for r in broker.requests]
    assert base64.b64decode(bodies[0]["payload"]) == '{"path":"é.png","width":640}'.encode()
    assert base64.b64decode(bodies[1]["payload"]) == b"null"
    assert "timeout_seconds" not in bodies[0] and "max_retries" not in bodies[0]


def test_payload_helpers_round_trip_and_refuse_nan() -> None:
    assert decode_json(encode_json({"a": [1, "ü"]})) == {"a": [1, "ü"]}
    assert decode_json(b"") is None
    assert payload_bytes(bytearray(b"ab")) == b"ab"
    assert payload_bytes(None) == b""
    with pytest.raises(TypeError, match="not JSON-serializable"):
        payload_bytes(b"", json=float("nan"))


def test_wait_long_polls_until_terminal_and_submit_wait_returns_the_task() -> None:
    broker = Broker("pending", "in_progress", "completed")
    with TaskQueueClient(URL, transport=httpx.MockTransport(broker)) as client:
        task = client.submit("resize", json={}, wait=30)
    assert task.status == "completed" and decode_json(task.result or b"") == {"ok": True}
    reads = broker.requests[1:]
    assert len(reads) == 3
    assert all(r.url.path == f"/api/v1/tasks/{TASK_ID}" for r in reads)
    waits = [float(r.url.params["wait"]) for r in reads]
    assert all(0 < w <= 30 for w in waits) and waits == sorted(waits, reverse=True)
    # The broker holds the call: the read timeout grows by that much.
    assert reads[0].extensions["timeout"]["read"] >= 10 + waits[0] - 0.5


def test_a_wait_longer_than_a_minute_is_cut_into_calls_of_at_most_sixty_seconds() -> None:
    now = [0.0]
    plan = WaitPlan(TASK_ID, timeout=150, clock=lambda: now[0])
    first = plan.next_call()
    assert dict(first.params) == {"wait": "60"} and first.holds_seconds == 60
    now[0] = 140.0
    assert dict(plan.next_call().params) == {"wait": "10"}
    forever = WaitPlan(TASK_ID, timeout=None, clock=lambda: now[0])
    assert dict(forever.next_call().params) == {"wait": "60"}


def test_an_early_non_terminal_answer_pauses_instead_of_spinning() -> None:
    now = [0.0]
    plan = WaitPlan(TASK_ID, timeout=30, clock=lambda: now[0])
    plan.next_call()
    now[0] = 0.1  # a broker without ?wait= answered at once
    assert plan.pause() == pytest.approx(0.9)
    plan.next_call()
    now[0] = 30.0
    assert plan.pause() == 0.0


def test_wait_raises_a_timeout_error_carrying_the_task_as_last_seen() -> None:
    broker = Broker("pending")
    client = TaskQueueClient(URL, transport=httpx.MockTransport(broker))
    with client, pytest.raises(TimeoutError) as raised:
        client.wait(TASK_ID, timeout=0)
    assert isinstance(raised.value, WaitTimeout)
    assert raised.value.task.status == "pending"
    assert str(raised.value) == f"task {TASK_ID} is still pending after 0s"
    assert len(broker.requests) == 1 and broker.requests[0].url.params["wait"] == "0"


@pytest.mark.parametrize("timeout", [-1.0, float("nan")])
def test_a_negative_or_nan_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be"):
        WaitPlan(TASK_ID, timeout)


def test_a_broker_that_drops_out_mid_wait_is_asked_again_but_not_before_a_first_answer() -> None:
    answers: list[str] = ["pending", "down", "completed"]
    seen: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = answers.pop(0)
        if step == "down":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=task_body(step))

    with TaskQueueClient(URL, transport=httpx.MockTransport(flaky)) as client:
        assert client.wait(TASK_ID, timeout=30).status == "completed"
    assert len(seen) == 3

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = TaskQueueClient(URL, transport=httpx.MockTransport(down))
    with client, pytest.raises(Unreachable):
        client.wait(TASK_ID, timeout=30)  # never answered: no reason to think it will


def test_retry_pause_gives_up_at_the_deadline() -> None:
    now = [0.0]
    plan = WaitPlan(TASK_ID, timeout=2, clock=lambda: now[0])
    assert plan.retry_pause() is None
    plan.answered = True
    assert plan.retry_pause() == 1.0
    now[0] = 1.5
    assert plan.retry_pause() == 0.5
    now[0] = 2.0
    assert plan.retry_pause() is None


def test_batch_items_follow_submits_rules() -> None:
    with pytest.raises(TypeError, match=r"payload must be bytes.*json="):
        task_request("resize", "a str")  # type: ignore[arg-type]
    item = task_request("resize", json={"w": 1}, priority=7)
    assert (item.payload, item.priority, item.max_retries) == (b'{"w":1}', 7, None)
    sent: list[httpx.Request] = []

    def broker(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={"tasks": [{"task_id": TASK_ID, "status": "pending"}]})

    with TaskQueueClient(URL, transport=httpx.MockTransport(broker)) as client:
        client.submit_batch([item])
    (body,) = json.loads(sent[0].content)["tasks"]
    assert body == {"task_type": "resize", "payload": "eyJ3IjoxfQ==", "priority": 7}
