"""`tq-admin` rendering without a broker: exact tables for fixed data, bar scaling, documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
import yaml

from tq_client import render
from tq_client.models import (
    AttemptOutcome,
    CreatedKey,
    Health,
    KeyInfo,
    QueueDepthByPriority,
    Stats,
    TaskAttempt,
    TaskDetail,
    TaskStatus,
    TaskSummary,
    WorkerInfo,
)

TASK_ID = UUID("123e4567-e89b-12d3-a456-426614174000")
NOON = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
CONTRACT_DEPTH = QueueDepthByPriority(high=100, normal=1000, low=134)


def text(lines: str) -> str:
    return "\n".join(line.strip() for line in lines.strip().splitlines()) + "\n"


def detail(**fields: object) -> TaskDetail:
    base: dict[str, object] = {
        "task_id": TASK_ID,
        "task_type": "send_email",
        "status": TaskStatus.COMPLETED,
        "priority": 200,
        "created_at": NOON,
        "updated_at": NOON + timedelta(minutes=1),
    }
    return TaskDetail.model_validate({**base, **fields})


def test_status_table_has_the_contract_rows_then_updated_and_retries() -> None:
    assert render.to_text(render.task_table(detail())) == text("""
        ┌──────────┬──────────────────────────────────────┐
        │ Field    │ Value                                │
        ├──────────┼──────────────────────────────────────┤
        │ ID       │ 123e4567-e89b-12d3-a456-426614174000 │
        │ Type     │ send_email                           │
        │ Status   │ completed                            │
        │ Priority │ 200                                  │
        │ Created  │ 2024-01-01T12:00:00Z                 │
        │ Updated  │ 2024-01-01T12:01:00Z                 │
        │ Retries  │ 0                                    │
        └──────────┴──────────────────────────────────────┘
    """)


def test_status_table_shows_worker_error_and_result_when_present() -> None:
    task = detail(worker_id="worker-host-1-abc", error="boom [red]x[/red]", result=b"ok")
    rendered = render.to_text(render.task_table(task))
    assert "│ Worker   │ worker-host-1-abc                    │" in rendered
    assert "│ Error    │ boom [red]x[/red]                    │" in rendered
    assert "│ Result   │ ok                                   │" in rendered


def test_timestamps_are_shown_in_utc_to_the_second() -> None:
    paris = timezone(timedelta(hours=1))
    assert render.timestamp(datetime(2024, 1, 1, 13, 0, 5, 999, tzinfo=paris)) == (
        "2024-01-01T12:00:05Z"
    )


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        (b"", ""),
        (b"hello world", "hello world"),
        (b"two\nlines", "two\nlines"),
        (b"\x00\xff", "base64:AP8="),
        ("é".encode(), "é"),
    ],
)
def test_results_are_text_when_printable_else_marked_base64(result: bytes, shown: str) -> None:
    assert render.result_text(result) == shown


def test_long_results_are_cut_with_their_size() -> None:
    shown = render.result_text(b"x" * 500)
    assert shown == "x" * render.RESULT_SHOWN_MAX + "… (500 bytes)"


def test_list_table_has_one_row_per_task_newest_first_as_given() -> None:
    tasks = [
        TaskSummary(
            task_id=TASK_ID,
            task_type="send_email",
            status=TaskStatus.PENDING,
            priority=150,
            created_at=NOON,
            updated_at=NOON,
        )
    ]
    assert render.to_text(render.task_list_table(tasks)) == text("""
        ┌──────────────────────────────────────┬────────────┬─────────┬──────────┬──────────────────────┬──────────────────────┐
        │ ID                                   │ Type       │ Status  │ Priority │ Created              │ Updated              │
        ├──────────────────────────────────────┼────────────┼─────────┼──────────┼──────────────────────┼──────────────────────┤
        │ 123e4567-e89b-12d3-a456-426614174000 │ send_email │ pending │ 150      │ 2024-01-01T12:00:00Z │ 2024-01-01T12:00:00Z │
        └──────────────────────────────────────┴────────────┴─────────┴──────────┴──────────────────────┴──────────────────────┘
    """)  # noqa: E501


def test_stats_table_has_the_contract_rows_in_order_then_the_extras() -> None:
    stats = Stats(
        pending_count=1234,
        in_progress_count=56,
        completed_last_hour=5000,
        failed_last_hour=12,
        worker_count=10,
        avg_processing_time_ms=125.5,
        queue_depth_by_priority=CONTRACT_DEPTH,
    )
    assert render.to_text(render.stats_table(stats)) == text("""
        ┌─────────────────────┬───────┐
        │ Metric              │ Value │
        ├─────────────────────┼───────┤
        │ Pending Tasks       │ 1234  │
        │ In Progress         │ 56    │
        │ Workers             │ 10    │
        │ Queue (High)        │ 100   │
        │ Queue (Normal)      │ 1000  │
        │ Queue (Low)         │ 134   │
        │ Completed (1h)      │ 5000  │
        │ Failed (1h)         │ 12    │
        │ Avg Processing (ms) │ 125.5 │
        │ Scheduled (not due) │ 0     │
        └─────────────────────┴───────┘
    """)


def test_workers_table_has_the_contract_columns_then_what_each_serves() -> None:
    served = {"task_types": ["email", "resize"], "concurrency": 8, "status": "draining"}
    workers = [
        WorkerInfo(
            worker_id=worker_id,
            registered_at=NOON,
            last_heartbeat=NOON,
            current_tasks=tasks,
            cpu_usage_percent=cpu,
            memory_usage_mb=memory,
            **extra,
        )
        for worker_id, tasks, cpu, memory, extra in [
            ("worker-a", 3, 45.2, 256.0, served),
            ("worker-b", 2, 32.1, 198.4, {}),  # from a broker that predates the extras
        ]
    ]
    assert render.to_text(render.workers_table(workers)) == text("""
        ┌───────────┬───────┬───────┬───────────┬─────────────┬──────────┬───────────────┐
        │ Worker ID │ Tasks │ CPU % │ Memory MB │ Concurrency │ Status   │ Task Types    │
        ├───────────┼───────┼───────┼───────────┼─────────────┼──────────┼───────────────┤
        │ worker-a  │ 3     │ 45.2  │ 256       │ 8           │ draining │ email, resize │
        │ worker-b  │ 2     │ 32.1  │ 198       │ -           │ online   │ -             │
        └───────────┴───────┴───────┴───────────┴─────────────┴──────────┴───────────────┘
    """)


def test_cluster_table_is_the_contracts_byte_for_byte() -> None:
    health = Health(status="healthy", is_leader=True, connected_workers=10, pending_tasks=1234)
    assert render.to_text(render.cluster_table(health)) == text("""
        ┌───────────────────┬─────────┐
        │ Property          │ Value   │
        ├───────────────────┼─────────┤
        │ Status            │ healthy │
        │ Is Leader         │ true    │
        │ Connected Workers │ 10      │
        │ Pending Tasks     │ 1234    │
        └───────────────────┴─────────┘
    """)


def test_cluster_table_of_a_degraded_broker_shows_unknown_counts_as_dashes() -> None:
    health = Health(status="degraded", is_leader=False, connected_workers=None, pending_tasks=None)
    rendered = render.to_text(render.cluster_table(health))
    assert "│ Is Leader         │ false    │" in rendered
    assert "│ Connected Workers │ -        │" in rendered


def test_queue_depth_chart_scales_the_largest_queue_to_fifty_blocks() -> None:
    assert render.queue_depth_chart(CONTRACT_DEPTH) == (
        "Queue Depth by Priority:\n"
        f"  High:   100 {'█' * 5}\n"
        f"  Normal: 1000 {'█' * 50}\n"
        f"  Low:    134 {'█' * 7}"
    )


def test_queue_depth_chart_of_an_empty_queue_has_no_bars() -> None:
    empty = QueueDepthByPriority(high=0, normal=0, low=0)
    assert render.queue_depth_chart(empty) == (
        "Queue Depth by Priority:\n  High:   0\n  Normal: 0\n  Low:    0"
    )


@pytest.mark.parametrize(
    ("count", "largest", "length"),
    [
        (0, 0, 0),
        (0, 10, 0),
        (10, 10, 50),
        (5, 10, 25),
        (1, 4, 13),  # 12.5 rounds half up
        (1, 1_000_000, 1),  # a non-empty queue always shows
        (999_999, 1_000_000, 50),
    ],
)
def test_bar_length_is_proportional_and_never_hides_a_nonempty_queue(
    count: int, largest: int, length: int
) -> None:
    assert render.bar_length(count, largest) == length


def test_keys_table_never_has_a_secret_column_and_shows_defaults() -> None:
    key = KeyInfo(
        key_id=TASK_ID,
        name="billing",
        prefix="tq_abc",
        permissions=["submit_tasks", "read_tasks"],
        rate_limit=None,
        burst=100,
        created_at=NOON,
        last_used_at=None,
        revoked_at=NOON,
    )
    rendered = render.to_text(render.keys_table([key]), width=400)
    assert rendered.splitlines()[1].split("│")[1:-1] == [
        f" {h:<{w}} "
        for h, w in [
            ("Key ID", 36),
            ("Name", 7),
            ("Prefix", 6),
            ("Permissions", 24),
            ("Rate/s", 7),
            ("Burst", 5),
            ("Created", 20),
            ("Last Used", 9),
            ("Revoked", 20),
        ]
    ]
    assert "│ default │ 100   │ 2024-01-01T12:00:00Z │ -         │ 2024-01-01T12:00:00Z │" in (
        rendered
    )


def test_created_key_text_shows_the_secret() -> None:
    key = CreatedKey(
        key_id=TASK_ID,
        name="ci",
        prefix="tq_abc",
        permissions=["admin"],
        rate_limit=5.0,
        burst=None,
        created_at=NOON,
        last_used_at=None,
        revoked_at=None,
        key="tq_abc_secret",
    )
    assert render.created_key_text(key).splitlines()[-1] == "Secret:      tq_abc_secret"


def test_documents_use_the_rest_apis_field_names_and_encodings() -> None:
    task = detail(result=b"hi")
    as_json = json.loads(render.document(task, "json"))
    assert as_json["task_id"] == str(TASK_ID)
    assert as_json["result"] == "aGk="
    assert as_json["created_at"] == "2024-01-01T12:00:00.123456Z"
    assert yaml.safe_load(render.document([task], "yaml")) == [as_json]
    assert render.document([], "json") == "[]"


def test_status_shows_the_limits_and_when_a_waiting_task_runs() -> None:
    retrying = detail(
        status=TaskStatus.FAILED,
        max_retries=5,
        timeout_seconds=60,
        run_at=NOON + timedelta(seconds=90),
        error="ValueError: too big\n\nTraceback (most recent call last):\n  File …",
    )
    rendered = render.to_text(render.task_table(retrying, now=NOON))
    assert "│ Limits   │ max 5 retries, timeout 60s" in rendered
    assert "│ Retry At │ 2024-01-01T12:01:30Z (in 90s)" in rendered
    assert "│ Error    │ ValueError: too big " in rendered and "Traceback" not in rendered
    assert render.error_details(retrying) == f"Error of the last attempt:\n{retrying.error}"
    scheduled = detail(status=TaskStatus.PENDING, run_at=NOON + timedelta(days=3))
    assert "│ Run At   │ 2024-01-04T12:00:00Z (in 3d)" in render.to_text(
        render.task_table(scheduled, now=NOON)
    )
    due = detail(status=TaskStatus.PENDING, run_at=NOON - timedelta(seconds=1))
    assert "│ Run At   │ 2024-01-01T11:59:59Z" in render.to_text(render.task_table(due, now=NOON))
    done = detail(run_at=NOON)
    assert "Run At" not in render.to_text(render.task_table(done, now=NOON))


def test_attempts_table_has_one_row_per_attempt_with_the_errors_first_line() -> None:
    attempts = [
        TaskAttempt(
            attempt=1,
            worker_id="worker-a",
            claimed_at=NOON,
            finished_at=NOON + timedelta(seconds=2),
            outcome=AttemptOutcome.FAILED,
            error="OSError: disk full\n\nTraceback …",
        ),
        TaskAttempt(attempt=2, worker_id="worker-b", claimed_at=NOON + timedelta(seconds=5)),
    ]
    assert render.to_text(render.attempts_table(attempts)) == text("""
        ┌─────────┬──────────┬──────────────────────┬──────────────────────┬─────────┬────────────────────┐
        │ Attempt │ Worker   │ Claimed              │ Finished             │ Outcome │ Error              │
        ├─────────┼──────────┼──────────────────────┼──────────────────────┼─────────┼────────────────────┤
        │ 1       │ worker-a │ 2024-01-01T12:00:00Z │ 2024-01-01T12:00:02Z │ failed  │ OSError: disk full │
        │ 2       │ worker-b │ 2024-01-01T12:00:05Z │ -                    │ running │ -                  │
        └─────────┴──────────┴──────────────────────┴──────────────────────┴─────────┴────────────────────┘
    """)  # noqa: E501


def test_queue_depth_chart_names_unserved_task_types_after_the_contracts_lines() -> None:
    chart = render.queue_depth_chart(CONTRACT_DEPTH, unserved=["resize", "thumbnail"])
    assert chart.splitlines()[:4] == render.queue_depth_chart(CONTRACT_DEPTH).splitlines()
    assert chart.splitlines()[4] == ("Unserved (ready tasks, no online worker): resize, thumbnail")
