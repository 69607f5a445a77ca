"""`tq-admin`: the operator's command line, a thin shell over `TaskQueueClient`.

Owns argument parsing, one small handler per command, and the exit codes: 0 done, 1 the broker
refused (API error), 2 usage error (including arguments the wire models refuse before anything
is sent), 3 broker unreachable. Tables and documents come from `render`. The one thing not to
break: a failure is one line on stderr (`tq-admin: ...`) and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import httpx
from pydantic import BaseModel
from rich.console import Console, RenderableType

from tq_client import render
from tq_client.client import (
    DEFAULT_TIMEOUT_SECONDS,
    InvalidRequest,
    NotFound,
    TaskQueueClient,
    TaskQueueError,
    Unreachable,
)
from tq_client.models import (
    MAX_RETRIES_DEFAULT,
    PERMISSIONS,
    PRIORITY_DEFAULT,
    TIMEOUT_SECONDS_DEFAULT,
    TaskStatus,
)

PROG = "tq-admin"
DEFAULT_URL = "http://127.0.0.1:8080"
EXIT_OK, EXIT_API_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PIPE_WIDTH = 1000  # a table printed to a pipe is never wrapped to a terminal's width
KEY_WARNING = "warning: store this secret now; it will not be shown again"


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see (an unreadable payload file)."""


@dataclass(frozen=True)
class Shown:
    """What a command produced: `data` for --format json|yaml, `human` for the table format."""

    data: BaseModel | Sequence[BaseModel] | None
    human: RenderableType
    exit_code: int = EXIT_OK
    notice: str | None = None  # one extra line for stderr


Handler = Callable[[TaskQueueClient, argparse.Namespace], Shown]


# --- argument types (a bad value is a usage error, exit 2) --------------------------------


def uuid_arg(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {text!r}") from None


def url_arg(text: str) -> str:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"expected http(s)://host[:port], got {text!r}")
    return text


def timestamp_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 timestamp: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs a time zone (Z or +hh:mm): {text!r}")
    return moment


# --- command handlers ---------------------------------------------------------------------


def read_payload(args: argparse.Namespace) -> bytes:
    if args.payload is not None:
        return str(args.payload).encode("utf-8")
    if args.payload_file is None:
        return b""
    if args.payload_file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.payload_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read payload file: {exc}") from None


def cmd_submit(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    submitted = client.submit(
        args.type,
        read_payload(args),
        priority=args.priority,
        schedule_at=args.schedule_at,
        timeout_seconds=args.timeout_seconds,
        max_retries=args.max_retries,
        idempotency_key=args.idempotency_key,
    )
    return Shown(submitted, f"Task submitted: {submitted.task_id}")


def cmd_status(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    task = client.get(args.task_id)
    return Shown(task, render.task_table(task))


def cmd_list(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    tasks = client.list(args.status, args.type, args.limit, args.offset)
    return Shown(tasks, render.task_list_table(tasks))


def cmd_stats(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    stats = client.stats()
    return Shown(stats, render.stats_table(stats))


def cmd_workers(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    workers = client.workers()
    return Shown(workers, render.workers_table(workers))


def cmd_queue_depth(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    depth = client.stats().queue_depth_by_priority
    return Shown(depth, render.queue_depth_chart(depth))


def cmd_cluster_status(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    health = client.health()
    code = EXIT_OK if health.status == "healthy" else EXIT_API_ERROR
    return Shown(health, render.cluster_table(health), exit_code=code)


def cmd_cancel(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    client.cancel(args.task_id)
    return Shown(None, f"Task cancelled: {args.task_id}")


def cmd_requeue(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    requeued = client.requeue(args.task_id)
    return Shown(requeued, f"Task requeued: {requeued.task_id} ({requeued.status.value})")


def cmd_keys_create(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    key = client.create_key(
        args.name, args.permission, args.rate_limit, args.burst, args.max_pending
    )
    return Shown(key, render.created_key_text(key), notice=KEY_WARNING)


def cmd_keys_list(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    keys = client.list_keys()
    return Shown(keys, render.keys_table(keys))


def cmd_keys_revoke(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    client.revoke_key(args.key_id)
    return Shown(None, f"Key revoked: {args.key_id}")


# --- the parser ---------------------------------------------------------------------------


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The whole command line; `env` supplies TQ_URL and TQ_API_KEY defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Administer a taskqueue broker.",
        epilog="Exit codes: 0 ok, 1 the broker refused, 2 usage error, 3 broker unreachable.",
    )
    _connection_options(parser, env)
    # The same options after the command (`tq-admin stats --url ...`), overriding only if given.
    connection = argparse.ArgumentParser(add_help=False)
    _connection_options(connection, None)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--format", choices=render.FORMATS, default="table")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Handler, summary: str, *parents: argparse.ArgumentParser
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, parents=[connection, *parents])
        sub.set_defaults(handler=handler)
        return sub

    _submit_options(command("submit", cmd_submit, "submit a task", output))
    status = command("status", cmd_status, "show one task", output)
    status.add_argument("task_id", type=uuid_arg)
    listing = command("list", cmd_list, "list tasks, newest first", output)
    listing.add_argument("--status", choices=[s.value for s in TaskStatus])
    listing.add_argument("--type", help="only tasks of this task type")
    listing.add_argument("--limit", type=int, help="at most this many (broker default 100)")
    listing.add_argument("--offset", type=int)
    command("stats", cmd_stats, "queue statistics", output)
    command("workers", cmd_workers, "connected workers", output)
    command("queue-depth", cmd_queue_depth, "pending tasks by priority, as bars", output)
    command("cluster-status", cmd_cluster_status, "broker health (exit 1 if degraded)", output)
    command("cancel", cmd_cancel, "cancel a pending task").add_argument("task_id", type=uuid_arg)
    requeue = command("requeue", cmd_requeue, "requeue a dead-lettered task (admin)", output)
    requeue.add_argument("task_id", type=uuid_arg)
    _keys_commands(commands.add_parser("keys", help="API keys (admin)"), connection, output)
    # Imported here: schedule_cli builds on this module's Shown and read_payload.
    from tq_client.schedule_cli import add_schedule_commands

    schedules = commands.add_parser("schedules", help="periodic schedules (manage_schedules)")
    add_schedule_commands(schedules, connection, output)
    return parser


def _connection_options(parser: argparse.ArgumentParser, env: Mapping[str, str] | None) -> None:
    """With `env`: the real defaults. Without: none (SUPPRESS), so a repeat only overrides."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if env is None else value

    given = env or {}
    parser.add_argument(
        "--url",
        type=url_arg,
        default=default(given.get("TQ_URL", DEFAULT_URL)),
        help=f"broker URL ($TQ_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=default(given.get("TQ_API_KEY")),
        help="API key ($TQ_API_KEY, which keeps it out of `ps`)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=default(DEFAULT_TIMEOUT_SECONDS),
        help="seconds to wait for the broker",
    )


def _submit_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--type", required=True, help="task type, e.g. send_email")
    payload = sub.add_mutually_exclusive_group()
    payload.add_argument("--payload-file", help="file whose bytes are the payload (- for stdin)")
    payload.add_argument("--payload", help="payload as text (UTF-8)")
    sub.add_argument("--priority", type=int, default=PRIORITY_DEFAULT, help="0-255, high >= 200")
    sub.add_argument(
        "--schedule-at", type=timestamp_arg, help="RFC 3339, e.g. 2030-01-01T12:00:00Z"
    )
    sub.add_argument(
        "--timeout",
        dest="timeout_seconds",
        type=int,
        default=TIMEOUT_SECONDS_DEFAULT,
        help="seconds the task may run",
    )
    sub.add_argument("--max-retries", type=int, default=MAX_RETRIES_DEFAULT)
    sub.add_argument("--idempotency-key", help="a repeat with the same key returns the first task")


def _keys_commands(
    keys: argparse.ArgumentParser,
    connection: argparse.ArgumentParser,
    output: argparse.ArgumentParser,
) -> None:
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key", parents=[connection, output])
    create.set_defaults(handler=cmd_keys_create)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--permission",
        action="append",
        required=True,
        choices=PERMISSIONS,
        help="repeat for several",
    )
    create.add_argument("--rate-limit", type=float, help="requests per second")
    create.add_argument("--burst", type=int, help="bucket size, in requests")
    create.add_argument(
        "--max-pending", type=int, help="most waiting tasks the key may have (default: no cap)"
    )
    listing = actions.add_parser(
        "list", help="list keys (never secrets)", parents=[connection, output]
    )
    listing.set_defaults(handler=cmd_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key", parents=[connection])
    revoke.set_defaults(handler=cmd_keys_revoke)
    revoke.add_argument("key_id", type=uuid_arg)


# --- running a command ----------------------------------------------------------------------


def describe(error: TaskQueueError) -> str:
    """One line: the broker's message, led by its status unless it already says what failed."""
    if error.status is None or isinstance(error, NotFound):
        return error.message
    return f"{error.status} {error.message}"


def fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def emit(shown: Shown, fmt: render.Format) -> None:
    if fmt != "table" and shown.data is not None:
        sys.stdout.write(render.document(shown.data, fmt) + "\n")
    elif isinstance(shown.human, str):
        sys.stdout.write(shown.human + "\n")
    else:
        width = None if sys.stdout.isatty() else PIPE_WIDTH
        Console(highlight=False, width=width).print(shown.human)
    sys.stdout.flush()
    if shown.notice:
        print(f"{PROG}: {shown.notice}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    try:
        with TaskQueueClient(args.url, args.api_key, args.request_timeout) as client:
            shown = handler(client, args)
    except Unreachable as exc:
        return fail(exc.message, EXIT_UNREACHABLE)
    except InvalidRequest as exc:
        return fail(describe(exc), EXIT_USAGE if exc.status is None else EXIT_API_ERROR)
    except TaskQueueError as exc:
        return fail(describe(exc), EXIT_API_ERROR)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    emit(shown, getattr(args, "format", "table"))
    return shown.exit_code


def main(argv: list[str] | None = None) -> int:
    args = build_parser(os.environ).parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`tq-admin list | head`); say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_API_ERROR
