"""The operator's broker calls against a real broker process: the shared client layer's
requests and error reading, sorted into the operator's two failures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tq_operator.broker import (
    BrokerClient,
    BrokerRejected,
    BrokerUnreachable,
    BrokerUrlRefused,
    pending,
)

from ..support.processes import BrokerProcess, free_port

ADMIN = "operator-broker-admin-key-0123456789"


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {"TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN}
    with BrokerProcess(
        ["--database-url", database_url], tmp_path / "broker.log", env=env
    ).running() as process:
        yield process


@pytest.fixture
async def client() -> AsyncIterator[BrokerClient]:
    client = BrokerClient()
    try:
        yield client
    finally:
        await client.close()


async def test_queue_depth_and_workers_read_through_the_shared_calls(
    broker: BrokerProcess, client: BrokerClient
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for task_type in ("resize", "resize", "email"):
        answer = httpx.post(
            f"{broker.url}/api/v1/tasks", json={"task_type": task_type}, headers=headers
        )
        assert answer.status_code == 201
    depth = await client.queue_depth(broker.url + "/", ["resize"], ADMIN)
    assert (depth.ready, depth.in_progress, pending(depth)) == (2, 0, 2)
    assert pending(await client.queue_depth(broker.url, ["resize", "email"], ADMIN)) == 3
    assert await client.workers(broker.url, ADMIN) == []


async def test_a_refused_key_is_a_rejection_carrying_the_brokers_message(
    broker: BrokerProcess, client: BrokerClient
) -> None:
    with pytest.raises(BrokerRejected, match=r"GET .*/api/v1/workers: HTTP 401: \S"):
        await client.workers(broker.url, "tq_not_a_real_key_0123456789abcdef")
    with pytest.raises(BrokerRejected, match="HTTP 401"):
        await client.queue_depth(broker.url, ["resize"])


async def test_no_answer_is_unreachable_and_a_foreign_url_is_refused_before_sending() -> None:
    client = BrokerClient(allowed_urls=["http://127.0.0.1:*"])
    try:
        with pytest.raises(BrokerUnreachable, match="ConnectError"):
            await client.workers(f"http://127.0.0.1:{free_port()}", ADMIN)
        with pytest.raises(BrokerUrlRefused):
            await client.workers("http://elsewhere.example:8080", ADMIN)
    finally:
        await client.close()
