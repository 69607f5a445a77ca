"""WS /ws with a `task_ids` filter: only those tasks' updates; bad filters are refused."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient

from tq_client.models import TASK_IDS_FILTER_MAX

from .test_worker_protocol import submit


def test_a_task_ids_subscription_gets_only_those_tasks_updates(api: TestClient) -> None:
    first, second, other = (submit(api, "idle") for _ in range(3))
    with api.websocket_connect("ws://127.0.0.1/ws") as ws:
        ws.send_text(
            json.dumps({"type": "subscribe", "filters": {"task_ids": [first, second.upper()]}})
        )
        ack = ws.receive_json()
        assert ack == {
            "type": "subscribed",
            "filters": {"task_types": [], "statuses": [], "task_ids": [first, second]},
        }
        for task_id in (other, first, second):
            assert api.delete(f"/api/v1/tasks/{task_id}").status_code == 204
        # The submits' own events may arrive too: they were sent after the subscription.
        seen: list[tuple[str, str]] = []
        while (second, "cancelled") not in seen:
            message: dict[str, Any] = ws.receive_json()
            assert message["type"] == "task_update"
            seen.append((message["task"]["task_id"], message["task"]["status"]))
        assert {task_id for task_id, _ in seen} == {first, second}
        assert [s for s in seen if s[1] == "cancelled"] == [
            (first, "cancelled"),
            (second, "cancelled"),
        ]


def test_bad_task_ids_filters_get_an_error_and_the_connection_stays(api: TestClient) -> None:
    too_many = [str(uuid.uuid4()) for _ in range(TASK_IDS_FILTER_MAX + 1)]
    with api.websocket_connect("ws://127.0.0.1/ws") as ws:
        for task_ids, needle in [
            ("01a2", "task_ids must be a list"),
            (["not-a-uuid"], "task_ids must be a list"),
            ([7], "task_ids must be a list"),
            (too_many, f"at most {TASK_IDS_FILTER_MAX}"),
        ]:
            ws.send_text(json.dumps({"type": "subscribe", "filters": {"task_ids": task_ids}}))
            error = ws.receive_json()
            assert error["type"] == "error"
            assert needle in error["error"], error
        ws.send_text(json.dumps({"type": "subscribe", "filters": {"task_ids": []}}))
        assert ws.receive_json()["type"] == "subscribed"
