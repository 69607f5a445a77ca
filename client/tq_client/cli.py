"""`tq-admin`: the operator's command line, a thin shell over `TaskQueueClient`.

Owns argument parsing, one small handler per command, and the exit codes: 0 done, 1 the broker
refused (API error), 2 usage error (including arguments the wire models refuse before anything
is sent), 3 broker unreachable. `wait` and `submit --wait` exit 0 only when the task completed,
1 when it ended otherwise (dead_letter, cancelled) or the wait timed out. Tables and documents
come from `render`. The one thing not to break: a failure is one line on stderr
(`tq-admin: ...`) and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json as jsonlib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import httpx
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.text import Text

from tq_client import render
from tq_client.client import (
    DEFAULT_TIMEOUT_SECONDS,
    InvalidRequest,
    NotFound,
    TaskQueueClient,
    TaskQueueError,
    Unreachable,
    WaitTimeout,
)
from tq_client.connection import DEFAULT_URL, api_key, broker_url
from tq_client.logs import (
    LOG_LEVEL_ENV,
    add_logging_arguments,
    configure_logging,
    default_log_format,
)
from tq_client.models import (
    MAX_RETRIES_DEFAULT,
    PERMISSIONS,
    PRIORITY_DEFAULT,
    TIMEOUT_SECONDS_DEFAULT,
    QueueDepthByPriority,
    TaskAttempt,
    TaskDetail,
    TaskStatus,
)
from tq_client.payloads import encode_json

PROG = "tq-admin"
WAIT_FOREVER = -1.0  # `--wait` without SECONDS
DISCOVERY_LIST_LIMIT = 1000  # newest waiting tasks read to find task types for queue-depth
QUEUE_DEPTH_TYPES_MAX = 100  # task types one queue-depth request may name
EXIT_OK, EXIT_API_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PIPE_WIDTH = 1000  # a table printed to a pipe is never wrapped to a terminal's width
KEY_WARNING = "warning: store this secret now; it will not be shown again"


class TaskWithAttempts(TaskDetail):
    """`status --format json|yaml`: the task body with its kept attempts."""

    attempts: list[TaskAttempt] = []


class QueueDepthView(QueueDepthByPriority):
    """`queue-depth --format json|yaml`: the contract's counts, and the unserved task types."""

    unserved_task_types: list[str] = []


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


def seconds_arg(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return seconds


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
    if args.json is not None:
        try:
            return encode_json(jsonlib.loads(args.json))
        except ValueError as exc:
            raise UsageError(f"--json is not a JSON value: {exc}") from None
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
    line = f"Task submitted: {submitted.task_id}"
    if args.wait is None:
        return Shown(submitted, line)
    if args.format == "table":  # say which task it is before a wait that may be long
        print(line, flush=True)
    return waited(client, submitted.task_id, args.wait)


def cmd_wait(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    return waited(client, args.task_id, args.timeout)


def waited(client: TaskQueueClient, task_id: UUID, timeout: float | None) -> Shown:
    """Wait for the task; exit 0 if it completed, 1 for any other end (or the timeout)."""
    task = client.wait(task_id, timeout=None if timeout == WAIT_FOREVER else timeout)
    code = EXIT_OK if task.status is TaskStatus.COMPLETED else EXIT_API_ERROR
    return Shown(task, task_view(task), exit_code=code)


def task_view(task: TaskDetail, attempts: Sequence[TaskAttempt] = ()) -> RenderableType:
    parts: list[RenderableType] = [render.task_table(task)]
    if attempts:
        parts.append(render.attempts_table(attempts))
    details = render.error_details(task)
    if details is not None:
        parts.append(Text(details))
    return parts[0] if len(parts) == 1 else Group(*parts)


def cmd_status(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    task = client.get(args.task_id)
    try:
        attempts = client.attempts(args.task_id)
    except NotFound:  # a broker that predates /attempts (or the task was just deleted)
        attempts = []
    data = TaskWithAttempts(**task.model_dump(), attempts=attempts)
    return Shown(data, task_view(task, attempts))


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
    types = args.type or known_task_types(client)
    unserved = client.queue_depth(types).unserved_task_types if types else []
    data = QueueDepthView(**depth.model_dump(), unserved_task_types=unserved)
    return Shown(data, render.queue_depth_chart(depth, unserved=unserved))


def known_task_types(client: TaskQueueClient) -> list[str]:
    """Task types worth checking for unserved work: those of the newest waiting tasks (the
    broker has no list of types) and those workers registered, at most QUEUE_DEPTH_TYPES_MAX."""
    types: dict[str, None] = {}
    for status in (TaskStatus.PENDING, TaskStatus.FAILED):
        for task in client.list(status, limit=DISCOVERY_LIST_LIMIT):
            types.setdefault(task.task_type)
    for worker in client.workers():
        for name in worker.task_types:
            types.setdefault(name)
    return sorted(types)[:QUEUE_DEPTH_TYPES_MAX]


def cmd_cluster_status(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    health = client.health()
    code = EXIT_OK if health.status == "healthy" else EXIT_API_ERROR
    return Shown(health, render.cluster_table(health), exit_code=code)


def cmd_cancel(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    client.cancel(args.task_id)
    return Shown(None, f"Task cancelled: {args.task_id}")


def cmd_abort(client: TaskQueueClient, args: argparse.Namespace) -> Shown:
    aborted = client.abort(args.task_id)
    if aborted.status is TaskStatus.CANCELLED:
        return Shown(aborted, f"Task cancelled: {aborted.task_id}")
    return Shown(aborted, f"Abort requested: {aborted.task_id} (its worker is stopping it)")


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
        epilog="Exit codes: 0 ok, 1 the broker refused (or a waited-for task did not complete), "
        "2 usage error, 3 broker unreachable.",
    )
    _connection_options(parser, env)
    add_logging_arguments(parser)
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
    wait = command(
        "wait", cmd_wait, "wait for a task to finish (exit 0 if it completed, else 1)", output
    )
    wait.add_argument("task_id", type=uuid_arg)
    wait.add_argument(
        "--timeout",
        type=seconds_arg,
        default=WAIT_FOREVER,
        help="give up (exit 1) after this many seconds (default: wait as long as it takes)",
    )
    status = command("status", cmd_status, "show one task and its attempts", output)
    status.add_argument("task_id", type=uuid_arg)
    listing = command("list", cmd_list, "list tasks, newest first", output)
    listing.add_argument("--status", choices=[s.value for s in TaskStatus])
    listing.add_argument("--type", help="only tasks of this task type")
    listing.add_argument("--limit", type=int, help="at most this many (broker default 100)")
    listing.add_argument("--offset", type=int)
    command("stats", cmd_stats, "queue statistics", output)
    command("workers", cmd_workers, "connected workers", output)
    depth = command(
        "queue-depth",
        cmd_queue_depth,
        "pending tasks by priority, as bars; names task types no online worker serves",
        output,
    )
    depth.add_argument(
        "--type",
        action="append",
        help="check these task types for unserved work (repeat; default: the types of waiting "
        "tasks and of registered workers)",
    )
    command("cluster-status", cmd_cluster_status, "broker health (exit 1 if degraded)", output)
    command("cancel", cmd_cancel, "cancel a pending task").add_argument("task_id", type=uuid_arg)
    abort = command("abort", cmd_abort, "abort a task, running or not", output)
    abort.add_argument("task_id", type=uuid_arg)
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
        default=default(broker_url(given, DEFAULT_URL)),
        help=f"broker URL ($TQ_URL or $TQ_BROKER_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=default(api_key(given)),
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
    payload.add_argument("--json", help="payload as a JSON value, e.g. '{\"width\": 640}'")
    sub.add_argument("--priority", type=int, default=PRIORITY_DEFAULT, help="0-255, high >= 200")
    sub.add_argument(
        "--schedule-at", type=timestamp_arg, help="RFC 3339, e.g. 2030-01-01T12:00:00Z"
    )
    sub.add_argument(
        "--timeout",
        dest="timeout_seconds",
        type=int,
        help=f"seconds the task may run (default: its workers' default for the type, else "
        f"{TIMEOUT_SECONDS_DEFAULT})",
    )
    sub.add_argument(
        "--max-retries",
        type=int,
        help=f"(default: its workers' default for the type, else {MAX_RETRIES_DEFAULT})",
    )
    sub.add_argument("--idempotency-key", help="a repeat with the same key returns the first task")
    sub.add_argument(
        "--wait",
        type=seconds_arg,
        nargs="?",
        const=WAIT_FOREVER,
        metavar="SECONDS",
        help="wait for the task to finish and print it (exit 0 if it completed, else 1); "
        "with SECONDS, give up after that long",
    )


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
    except WaitTimeout as exc:
        return fail(str(exc), EXIT_API_ERROR)
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


class _Stderr:
    """Whatever sys.stderr is when a record is written (tests swap it between runs)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """The shared format (--log-format / TQ_LOG_FORMAT). A command line's own output is its
    stdout, so only warnings are logged unless --log-level / TQ_LOG_LEVEL asks for more, and
    httpx's line per request only at debug."""
    log_format = args.log_format or default_log_format()
    level = args.log_level or env.get(LOG_LEVEL_ENV, "").strip().lower() or "warning"
    configure_logging(log_format, level, stream=_Stderr())  # type: ignore[arg-type]
    quiet = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(quiet)


def main(argv: list[str] | None = None) -> int:
    args = build_parser(os.environ).parse_args(argv)
    try:
        setup_logging(args, os.environ)
    except ValueError as exc:  # a bad TQ_LOG_FORMAT / TQ_LOG_LEVEL
        return fail(str(exc), EXIT_USAGE)
    try:
        return run(args)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (`tq-admin list | head`); say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_API_ERROR
