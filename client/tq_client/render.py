"""What `tq-admin` prints: box-drawn tables, the queue-depth bar chart, JSON and YAML documents.

Pure functions from wire models to rich renderables or text; nothing here talks to the broker
or touches a terminal. The one thing not to break: the column headers, row labels and layouts of
the Admin CLI section of `shared/spec/API.md`, which people and scripts read.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import yaml
from pydantic import BaseModel
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from tq_client.models import (
    CreatedKey,
    Health,
    KeyInfo,
    Progress,
    QueueDepthByPriority,
    Stats,
    TaskAttempt,
    TaskDetail,
    TaskStatus,
    TaskSummary,
    WorkerInfo,
)

Format = Literal["table", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("table", "json", "yaml")
BAR_WIDTH = 50  # characters of the largest bar in the queue-depth chart
BAR_CHAR = "█"
RESULT_SHOWN_MAX = 200  # characters of a task result shown in a table
ABSENT = "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A ┌─┬─┐ table. Cells are `Text`, so `[brackets]` in task data are never rich markup."""
    grid = Table(box=box.SQUARE, header_style="bold", highlight=False)
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    return grid


def timestamp(moment: datetime) -> str:
    """UTC to the second, like the contract's `2024-01-01T12:00:00Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def number(value: float, decimals: int = 1) -> str:
    return str(int(value)) if value == int(value) else f"{value:.{decimals}f}"


def result_text(result: bytes) -> str:
    """A task result as text when it is printable UTF-8, else as base64 (marked so)."""
    try:
        text = result.decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"  # not printable: shown as base64
    if not all(char.isprintable() or char in "\n\t" for char in text):
        text = "base64:" + base64.b64encode(result).decode("ascii")
    if len(text) > RESULT_SHOWN_MAX:
        return f"{text[:RESULT_SHOWN_MAX]}… ({len(result)} bytes)"
    return text


def task_table(task: TaskDetail, now: datetime | None = None) -> Table:
    """The contract's rows, then (from a broker that sends them) when the task is due and the
    limits it runs under; a multi-line error shows its first line (the rest is printed below
    the tables by `error_details`)."""
    rows = [
        ("ID", str(task.task_id)),
        ("Type", task.task_type),
        ("Status", task.status.value),
        ("Priority", str(task.priority)),
        ("Created", timestamp(task.created_at)),
        ("Updated", timestamp(task.updated_at)),
        ("Retries", str(task.retry_count)),
    ]
    limits = limits_text(task)
    if limits is not None:
        rows.append(("Limits", limits))
    due = due_row(task, now or datetime.now(UTC))
    if due is not None:
        rows.append(due)
    if task.worker_id is not None:
        rows.append(("Worker", task.worker_id))
    if task.error is not None:
        rows.append(("Error", task.error.split("\n", 1)[0]))
    if task.result is not None:
        rows.append(("Result", result_text(task.result)))
    if task.progress is not None:
        rows.append(("Progress", progress_text(task.progress)))
    if task.aborted_at is not None:
        rows.append(("Aborted", f"{timestamp(task.aborted_at)} by {task.aborted_by or ABSENT}"))
    return table(("Field", "Value"), rows)


def progress_text(progress: Progress) -> str:
    """`42% copying part 3 (at 2026-01-01T12:00:00Z)`."""
    percent = number(round(progress.fraction * 100, 1))
    message = f" {progress.message}" if progress.message else ""
    return f"{percent}%{message} (at {timestamp(progress.updated_at)})"


def limits_text(task: TaskDetail) -> str | None:
    """`max 3 retries, timeout 300s`, from a broker that sends them."""
    parts = []
    if task.max_retries is not None:
        parts.append(f"max {task.max_retries} retries")
    if task.timeout_seconds is not None:
        parts.append(f"timeout {task.timeout_seconds}s")
    return ", ".join(parts) or None


def due_row(task: TaskDetail, now: datetime) -> tuple[str, str] | None:
    """When a waiting task runs: `Retry At` after a failed attempt, `Run At` for a pending
    task (its schedule_at); nothing once it ran or ended. Labels stay within the width of the
    contract's longest (`Priority`), so the contract's rows look as they always did."""
    if task.run_at is None or task.status not in (TaskStatus.PENDING, TaskStatus.FAILED):
        return None
    when = timestamp(task.run_at)
    if task.run_at > now:
        when += f" (in {duration(task.run_at - now)})"
    return ("Retry At" if task.status is TaskStatus.FAILED else "Run At", when)


def duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"


def attempts_table(attempts: Sequence[TaskAttempt]) -> Table:
    """One row per kept attempt, the error's first line only."""

    def when(moment: datetime | None) -> str:
        return ABSENT if moment is None else timestamp(moment)

    return table(
        ("Attempt", "Worker", "Claimed", "Finished", "Outcome", "Error"),
        (
            (
                str(a.attempt),
                a.worker_id,
                timestamp(a.claimed_at),
                when(a.finished_at),
                "running" if a.outcome is None else a.outcome.value,
                ABSENT if a.error is None else a.error.split("\n", 1)[0][:RESULT_SHOWN_MAX],
            )
            for a in attempts
        ),
    )


def error_details(task: TaskDetail) -> str | None:
    """The task's whole error when it has more than its first line (a traceback)."""
    if task.error is None or "\n" not in task.error:
        return None
    return f"Error of the last attempt:\n{task.error}"


def task_list_table(tasks: Sequence[TaskSummary]) -> Table:
    return table(
        ("ID", "Type", "Status", "Priority", "Created", "Updated"),
        (
            (
                str(t.task_id),
                t.task_type,
                t.status.value,
                str(t.priority),
                timestamp(t.created_at),
                timestamp(t.updated_at),
            )
            for t in tasks
        ),
    )


def stats_table(stats: Stats) -> Table:
    depth = stats.queue_depth_by_priority
    rows = [
        ("Pending Tasks", str(stats.pending_count)),
        ("In Progress", str(stats.in_progress_count)),
        ("Workers", str(stats.worker_count)),
        ("Queue (High)", str(depth.high)),
        ("Queue (Normal)", str(depth.normal)),
        ("Queue (Low)", str(depth.low)),
        ("Completed (1h)", str(stats.completed_last_hour)),
        ("Failed (1h)", str(stats.failed_last_hour)),
        ("Avg Processing (ms)", number(stats.avg_processing_time_ms)),
        ("Scheduled (not due)", str(stats.scheduled_count)),
    ]
    return table(("Metric", "Value"), rows)


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    """The contract's four columns, then what each worker serves and its state."""
    return table(
        ("Worker ID", "Tasks", "CPU %", "Memory MB", "Concurrency", "Status", "Task Types"),
        (
            (
                w.worker_id,
                str(w.current_tasks),
                f"{w.cpu_usage_percent:.1f}",
                f"{w.memory_usage_mb:.0f}",
                str(w.concurrency) if w.concurrency else ABSENT,
                w.status.value,
                ", ".join(w.task_types) or ABSENT,
            )
            for w in workers
        ),
    )


def cluster_table(health: Health) -> Table:
    def count(value: int | None) -> str:
        return ABSENT if value is None else str(value)

    rows = [
        ("Status", health.status),
        ("Is Leader", "true" if health.is_leader else "false"),
        ("Connected Workers", count(health.connected_workers)),
        ("Pending Tasks", count(health.pending_tasks)),
    ]
    return table(("Property", "Value"), rows)


def keys_table(keys: Sequence[KeyInfo]) -> Table:
    def when(moment: datetime | None) -> str:
        return ABSENT if moment is None else timestamp(moment)

    return table(
        (
            "Key ID",
            "Name",
            "Prefix",
            "Permissions",
            "Rate/s",
            "Burst",
            "Created",
            "Last Used",
            "Revoked",
        ),
        (
            (
                str(k.key_id),
                k.name,
                k.prefix,
                ", ".join(k.permissions),
                "default" if k.rate_limit is None else number(k.rate_limit),
                "default" if k.burst is None else str(k.burst),
                timestamp(k.created_at),
                when(k.last_used_at),
                when(k.revoked_at),
            )
            for k in keys
        ),
    )


def created_key_text(key: CreatedKey) -> str:
    return "\n".join(
        [
            f"Key created: {key.key_id}",
            f"Name:        {key.name}",
            f"Permissions: {', '.join(key.permissions)}",
            f"Secret:      {key.key}",
        ]
    )


def bar_length(count: int, largest: int, width: int = BAR_WIDTH) -> int:
    """Characters of a bar: the largest count gets `width`, any non-zero count at least one."""
    if count <= 0 or largest <= 0:
        return 0
    return max(1, (2 * count * width + largest) // (2 * largest))  # rounds half up


def queue_depth_chart(
    depth: QueueDepthByPriority, width: int = BAR_WIDTH, unserved: Sequence[str] = ()
) -> str:
    """The contract's chart; then, if some task types have ready tasks and no online worker,
    a line naming them (nothing will run those tasks until a worker for them starts)."""
    counts = [("High", depth.high), ("Normal", depth.normal), ("Low", depth.low)]
    largest = max(count for _, count in counts)
    lines = ["Queue Depth by Priority:"]
    for label, count in counts:
        bar = BAR_CHAR * bar_length(count, largest, width)
        lines.append(f"  {label + ':':<8}{count} {bar}".rstrip())
    if unserved:
        lines.append(f"Unserved (ready tasks, no online worker): {', '.join(unserved)}")
    return "\n".join(lines)


def document(data: BaseModel | Sequence[BaseModel], fmt: Format) -> str:
    """JSON or YAML of wire models, with the field names and encodings of the REST API."""
    plain = (
        data.model_dump(mode="json")
        if isinstance(data, BaseModel)
        else [item.model_dump(mode="json") for item in data]
    )
    if fmt == "yaml":
        return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(plain, indent=2, ensure_ascii=False)


def to_text(renderable: RenderableType, width: int = 200) -> str:
    """A renderable as plain text (no colour, no styles), as printed to a pipe."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    console.print(renderable, highlight=False)
    return out.getvalue()
