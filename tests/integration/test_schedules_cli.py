"""`tq-admin schedules ...` and the clients' schedule calls against a real broker process with
auth on: the manage_schedules permission, every command, its errors and exit codes, and the
broker's own leader firing a schedule."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tq_client.client import AsyncTaskQueueClient, Conflict, Forbidden, TaskQueueClient

from ..support.processes import BrokerProcess
from .test_admin_cli import tq_admin

ADMIN = "schedules-cli-bootstrap-secret-0123456789"


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[BrokerProcess]:
    env = {"TQ_AUTH": "on", "TQ_ADMIN_API_KEY": ADMIN}
    process = BrokerProcess(["--database-url", database_url], tmp_path / "b.log", env=env).start()
    try:
        yield process
    finally:
        process.stop()


def new_key(url: str, *permissions: str) -> str:
    argv = ["keys", "create", "--name", "sched", "--format", "json"]
    for permission in permissions:
        argv += ["--permission", permission]
    key: str = json.loads(tq_admin(url, *argv, api_key=ADMIN).stdout)["key"]
    return key


def test_schedules_commands_with_a_manage_schedules_key(secured: BrokerProcess) -> None:
    url = secured.url
    key = new_key(url, "manage_schedules")
    keys = tq_admin(url, "keys", "list", "--format", "json", api_key=ADMIN).stdout
    listed_keys = json.loads(keys)
    assert listed_keys[0]["permissions"] == ["manage_schedules"]

    created = tq_admin(
        url, "schedules", "create", "--name", "nightly", "--cron", "0 3 * * *",
        "--timezone", "Europe/Berlin", "--type", "report", "--payload", "hi", api_key=key,
    ).stdout  # fmt: skip
    assert created.startswith("Schedule created: nightly (next fire ")
    tq_admin(url, "schedules", "create", "--name", "often", "--every", "60", "--type", "ping",
             "--paused", api_key=key)  # fmt: skip

    table = tq_admin(url, "schedules", "list", api_key=key).stdout.splitlines()
    assert [c.strip() for c in table[1].split("│")[1:-1]] == [
        "Name", "Timing", "Task Type", "State", "Next Fire", "Last Fire", "Last Task",
    ]  # fmt: skip
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in table[3:-1]]
    assert [row[:4] for row in rows] == [
        ["nightly", "0 3 * * * (Europe/Berlin)", "report", "active"],
        ["often", "every 60s", "ping", "paused"],
    ]
    assert rows[1][4:] == ["-", "-", "-"]

    shown = json.loads(tq_admin(url, "schedules", "show", "nightly", "--format", "json",
                                api_key=key).stdout)  # fmt: skip
    assert (shown["payload"], len(shown["next_fire_times"])) == ("aGk=", 5)
    assert tq_admin(url, "schedules", "pause", "nightly", api_key=key).stdout.strip() == (
        "Schedule paused: nightly"
    )
    resumed = tq_admin(url, "schedules", "resume", "often", api_key=key).stdout
    assert resumed.startswith("Schedule resumed: often (next fire ")
    states = json.loads(tq_admin(url, "schedules", "list", "--format", "json", api_key=key).stdout)
    assert [(s["name"], s["paused"]) for s in states] == [("nightly", True), ("often", False)]
    assert tq_admin(url, "schedules", "delete", "often", api_key=key).stdout.strip() == (
        "Schedule deleted: often"
    )

    # errors: duplicate (409), unknown (404), a cron the broker refuses (400) all exit 1;
    # arguments the client refuses before sending exit 2
    duplicate = tq_admin(url, "schedules", "create", "--name", "nightly", "--every", "5",
                         "--type", "x", api_key=key, code=1)  # fmt: skip
    assert "409" in duplicate.stderr
    missing = tq_admin(url, "schedules", "delete", "often", api_key=key, code=1)
    assert "not found" in missing.stderr
    bad_cron = tq_admin(url, "schedules", "create", "--name", "b", "--cron", "0 25 * * *",
                        "--type", "x", api_key=key, code=1)  # fmt: skip
    assert "400" in bad_cron.stderr
    tq_admin(url, "schedules", "create", "--name", "b", "--cron", "0 3 * * *", "--timezone",
             "Nowhere/City", "--type", "x", api_key=key, code=2)  # fmt: skip
    tq_admin(url, "schedules", "create", "--name", "b", "--cron", "0 3 * * *", "--every", "5",
             "--type", "x", api_key=key, code=2)  # fmt: skip


def test_other_permissions_may_not_touch_schedules(secured: BrokerProcess) -> None:
    key = new_key(secured.url, "submit_tasks", "read_tasks", "cancel_tasks", "process_tasks")
    with TaskQueueClient(secured.url, key) as client:
        with pytest.raises(Forbidden, match="manage_schedules"):
            client.schedules()
        with pytest.raises(Forbidden):
            client.create_schedule("x", "report", interval_seconds=5)
    with TaskQueueClient(secured.url, ADMIN) as admin:  # admin may
        admin.create_schedule("x", "report", interval_seconds=5)
        with pytest.raises(Conflict):
            admin.create_schedule("x", "report", interval_seconds=5)
        assert [s.name for s in admin.schedules()] == ["x"]


async def test_the_leader_fires_a_schedule_and_get_shows_its_last_task(
    secured: BrokerProcess,
) -> None:
    async with AsyncTaskQueueClient(secured.url, ADMIN) as client:
        created = await client.create_schedule("tick", "tick", interval_seconds=1)
        assert created.last_task_id is None
        deadline = time.monotonic() + 30
        schedule = created
        while schedule.last_task_id is None:
            assert time.monotonic() < deadline, "the leader never fired the schedule"
            await asyncio.sleep(0.1)
            schedule = await client.get_schedule("tick")
        task = await client.get(schedule.last_task_id)
        assert task.task_type == "tick"
        await client.update_schedule("tick", paused=True)
        await client.delete_schedule("tick")
        assert await client.schedules() == []
    with httpx.Client(base_url=secured.url) as http:
        assert http.get("/api/v1/schedules").status_code == 401
