"""`tq-admin schedules list|show|create|pause|resume|delete`: periodic schedules, and their
tables. Built on `cli.py` (its `Shown`, argument types and payload reading); the one thing
not to break is the same as there: a failure is one line and an exit code."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime

from rich.table import Table

from tq_client import render
from tq_client.cli import Handler, Shown, read_payload
from tq_client.client import TaskQueueClient
from tq_client.models import PRIORITY_DEFAULT
from tq_client.schedules import TIMEZONE_DEFAULT, MissedFires, ScheduleInfo

TYPE_DEFAULT = "task type's default"


def timing_text(schedule: ScheduleInfo) -> str:
    if schedule.cron is not None:
        return f"{schedule.cron} ({schedule.timezone})"
    return f"every {schedule.interval_seconds}s"


def _when(moment: datetime | None) -> str:
    return render.ABSENT if moment is None else render.timestamp(moment)


def schedules_table(schedules: Sequence[ScheduleInfo]) -> Table:
    return render.table(
        ("Name", "Timing", "Task Type", "State", "Next Fire", "Last Fire", "Last Task"),
        (
            (
                s.name,
                timing_text(s),
                s.task_type,
                "paused" if s.paused else "active",
                _when(s.next_fire_times[0] if s.next_fire_times else None),
                _when(s.last_fire_time),
                str(s.last_task_id) if s.last_task_id else render.ABSENT,
            )
            for s in schedules
        ),
    )


def schedule_table(s: ScheduleInfo) -> Table:
    rows = [
        ("Name", s.name),
        ("Timing", timing_text(s)),
        ("Task Type", s.task_type),
        ("Payload", render.result_text(s.payload) if s.payload else render.ABSENT),
        ("Priority", str(s.priority)),
        ("Timeout", TYPE_DEFAULT if s.timeout_seconds is None else f"{s.timeout_seconds}s"),
        ("Max Retries", TYPE_DEFAULT if s.max_retries is None else str(s.max_retries)),
        ("State", "paused" if s.paused else "active"),
        ("Missed Fires", s.missed_fires.value),
        ("Next Fires", "\n".join(render.timestamp(t) for t in s.next_fire_times) or "-"),
        ("Last Fire", _when(s.last_fire_time)),
        ("Last Task", str(s.last_task_id) if s.last_task_id else render.ABSENT),
    ]
    return render.table(("Field", "Value"), rows)


def cmd_list(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    schedules = client.schedules(args.limit, args.offset)
    return Shown(schedules, schedules_table(schedules))


def cmd_show(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    schedule = client.get_schedule(args.name)
    return Shown(schedule, schedule_table(schedule))


def cmd_create(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    schedule = client.create_schedule(
        args.name,
        args.type,
        cron=args.cron,
        interval_seconds=args.every,
        timezone=args.timezone,
        payload=read_payload(args),
        priority=args.priority,
        timeout_seconds=args.timeout_seconds,
        max_retries=args.max_retries,
        paused=args.paused,
        missed_fires=args.missed_fires,
    )
    first = _when(schedule.next_fire_times[0] if schedule.next_fire_times else None)
    return Shown(schedule, f"Schedule created: {schedule.name} (next fire {first})")


def cmd_pause(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    schedule = client.update_schedule(args.name, paused=True)
    return Shown(schedule, f"Schedule paused: {schedule.name}")


def cmd_resume(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    schedule = client.update_schedule(args.name, paused=False)
    first = _when(schedule.next_fire_times[0] if schedule.next_fire_times else None)
    return Shown(schedule, f"Schedule resumed: {schedule.name} (next fire {first})")


def cmd_delete(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    client.delete_schedule(args.name)
    return Shown(None, f"Schedule deleted: {args.name}")


def add_schedule_commands(
    schedules: argparse.ArgumentParser,
    connection: argparse.ArgumentParser,
    output: argparse.ArgumentParser,
) -> None:
    actions = schedules.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")

    def action(
        name: str, handler: Handler, summary: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, parents=[connection, *parents])
        sub.set_defaults(handler=handler)
        return sub

    listing = action("list", cmd_list, "list schedules by name", output)
    listing.add_argument("--limit", type=int, help="at most this many (broker default 100)")
    listing.add_argument("--offset", type=int)
    action("show", cmd_show, "one schedule with its next fire times", output).add_argument("name")
    _create_options(action("create", cmd_create, "create a periodic schedule", output))
    action("pause", cmd_pause, "stop firing until resumed", output).add_argument("name")
    action("resume", cmd_resume, "fire again, from now on", output).add_argument("name")
    action("delete", cmd_delete, "delete a schedule").add_argument("name")


def _create_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--name", required=True, help="unique, e.g. nightly-report")
    timing = sub.add_mutually_exclusive_group(required=True)
    timing.add_argument("--cron", help='5 fields, e.g. "0 3 * * *" (minute hour dom month dow)')
    timing.add_argument("--every", type=int, metavar="SECONDS", help="fire every N seconds")
    sub.add_argument("--timezone", default=TIMEZONE_DEFAULT, help="IANA name for --cron")
    sub.add_argument("--type", required=True, help="task type of each fired task")
    payload = sub.add_mutually_exclusive_group()
    payload.add_argument("--payload-file", help="file whose bytes are the payload (- for stdin)")
    payload.add_argument("--payload", help="payload as text (UTF-8)")
    payload.add_argument("--json", help="payload as a JSON value, e.g. '{\"report\": 1}'")
    sub.add_argument("--priority", type=int, default=PRIORITY_DEFAULT, help="0-255, high >= 200")
    sub.add_argument(
        "--timeout", dest="timeout_seconds", type=int, help="default: the task type's default"
    )
    sub.add_argument("--max-retries", type=int, help="default: the task type's default")
    sub.add_argument("--paused", action="store_true", help="create it paused")
    sub.add_argument(
        "--missed-fires",
        choices=[m.value for m in MissedFires],
        default=MissedFires.FIRE_ONCE.value,
        help="after an outage: one task for the missed window, or none",
    )
