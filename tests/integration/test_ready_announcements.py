"""A submit wakes the claims waiting for its task type, on its own replica and on the others,
after it committed and without the claim poll (tq_broker.ready_announcer).

The claim poll (`ReadyCheck`) is set to a minute here, longer than any claim waits, so a claim
that returns a task was woken by the announcement and by nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tq_broker.app import create_app
from tq_broker.connector import ConnectorConfig
from tq_broker.errors import StoreUnavailable
from tq_broker.notifier import TaskReadyNotifier
from tq_broker.ready_announcer import ReadyAnnouncer
from tq_broker.settings import BrokerSettings

from ..conftest import LOOPBACK

CLAIM_WAIT_SECONDS = 20.0


@pytest.fixture
def settings(database_url: str) -> BrokerSettings:
    return BrokerSettings(database_url=database_url, auth="off", claim_poll_interval_seconds=60)


@pytest.fixture
def replicas(settings: BrokerSettings) -> Iterator[tuple[TestClient, TestClient]]:
    """Two replicas of the broker on one database."""
    with (
        TestClient(create_app(settings), base_url=LOOPBACK) as first,
        TestClient(create_app(settings), base_url=LOOPBACK) as second,
    ):
        yield first, second


def register(api: TestClient, worker_id: str, task_types: list[str]) -> None:
    response = api.post(
        "/api/v1/workers",
        json={"worker_id": worker_id, "task_types": task_types, "concurrency": 4},
    )
    assert response.status_code == 201, response.text


def claim_in_background(api: TestClient, worker_id: str) -> Callable[[], dict[str, Any]]:
    """Start a long-polling claim; the returned function joins it and gives its answer and
    how long it waited."""
    answer: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        response = api.post(
            "/api/v1/tasks/claim",
            json={"worker_id": worker_id, "max_tasks": 1, "wait_seconds": CLAIM_WAIT_SECONDS},
        )
        answer["seconds"] = time.monotonic() - started
        answer["tasks"] = [t["task_id"] for t in response.json()["tasks"]]

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)  # the claim found nothing and waits

    def join() -> dict[str, Any]:
        thread.join(CLAIM_WAIT_SECONDS + 10)
        return answer

    return join


def submit(api: TestClient, task_type: str, **fields: Any) -> str:
    response = api.post("/api/v1/tasks", json={"task_type": task_type, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["task_id"])


@pytest.mark.parametrize("waiting_on", ["the same replica", "another replica"])
def test_a_submit_wakes_a_claim_waiting_on(
    replicas: tuple[TestClient, TestClient], waiting_on: str
) -> None:
    first, second = replicas
    claimer = first if waiting_on == "the same replica" else second
    register(claimer, "worker-waiting-aaaaaa", ["resize"])
    join = claim_in_background(claimer, "worker-waiting-aaaaaa")
    task_id = submit(first, "resize")
    answer = join()
    assert answer["tasks"] == [task_id]
    assert answer["seconds"] < CLAIM_WAIT_SECONDS / 2, "woken by its timeout, not the submit"


def test_a_batch_wakes_a_waiting_claim_on_another_replica(
    replicas: tuple[TestClient, TestClient],
) -> None:
    first, second = replicas
    register(second, "worker-batch-aaaaaa", ["email"])
    join = claim_in_background(second, "worker-batch-aaaaaa")
    response = first.post(
        "/api/v1/tasks/batch", json={"tasks": [{"task_type": "other"}, {"task_type": "email"}]}
    )
    assert response.status_code == 201, response.text
    email_id = response.json()["tasks"][1]["task_id"]
    answer = join()
    assert answer["tasks"] == [email_id]
    assert answer["seconds"] < CLAIM_WAIT_SECONDS / 2


def test_a_task_scheduled_for_later_wakes_nobody(
    replicas: tuple[TestClient, TestClient], database_url: str
) -> None:
    first, second = replicas
    register(second, "worker-later-aaaaaa", ["resize"])
    join = claim_in_background(second, "worker-later-aaaaaa")
    with psycopg.connect(database_url, autocommit=True) as listening:
        listening.execute("LISTEN tq_task_ready")
        submit(first, "resize", schedule_at="2999-01-01T00:00:00Z")
        assert [n.payload for n in listening.notifies(timeout=1.0)] == [], "announced"
        now_ready = submit(first, "resize")
        assert [n.payload for n in listening.notifies(timeout=5.0, stop_after=1)] == ["resize 1"]
    answer = join()
    assert answer["tasks"] == [now_ready], "the scheduled task is not claimable, nor claimed"


def test_a_submit_commits_without_notifying_in_its_own_transaction(
    replicas: tuple[TestClient, TestClient], database_url: str
) -> None:
    """The submit's insert sends no notification itself (a NOTIFY in the submitting
    transaction would serialise every submitting commit on PostgreSQL's notify-queue lock):
    an insert made directly in SQL reaches no listener."""
    first, _ = replicas
    with psycopg.connect(database_url, autocommit=True) as listening:
        listening.execute("LISTEN tq_task_ready")
        with psycopg.connect(database_url, autocommit=True) as inserting:
            inserting.execute(
                "INSERT INTO tq_tasks (task_id, task_type, payload, priority, run_at,"
                " timeout_seconds, max_retries) VALUES"
                " (gen_random_uuid(), 'direct', '', 0, now(), 60, 0)"
            )
        assert list(listening.notifies(timeout=1.0)) == []
        submit(first, "announced")
        payloads = [n.payload for n in listening.notifies(timeout=5.0, stop_after=1)]
        assert payloads == ["announced 1"], "the previous version's payload, for rolling updates"


async def test_an_announcement_whose_send_failed_goes_with_the_next_one(database_url: str) -> None:
    """The announcer's session dies (a PostgreSQL restart, a terminated backend): the counts it
    was sending are not dropped but sent, added up, once it has reconnected."""
    notifier = TaskReadyNotifier()
    announcer = ReadyAnnouncer(ConnectorConfig(database_url), notifier)
    with psycopg.connect(database_url, autocommit=True) as listening:
        listening.execute("LISTEN tq_task_ready")
        try:
            announcer.tasks_inserted([{"task_type": "first", "ready": True}])
            assert await announcer.run_once() == 1
            assert [n.payload for n in listening.notifies(timeout=5.0, stop_after=1)] == ["first 1"]
            listening.execute("SELECT pg_terminate_backend(%s)", (announcer.backend_pid,))
            announcer.tasks_inserted([{"task_type": "lost", "ready": True}] * 2)
            with pytest.raises(StoreUnavailable):
                await announcer.run_once()
            announcer.tasks_inserted([{"task_type": "lost", "ready": True}])
            assert await announcer.run_once() == 1
            payloads = [n.payload for n in listening.notifies(timeout=5.0, stop_after=1)]
        finally:
            await announcer.close()
    assert payloads == ["lost 3"]
