"""`tq-admin` argument parsing and exit codes that need no broker."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from tq_client import cli
from tq_client.client import Conflict, InvalidRequest, NotFound, TaskQueueError, Unauthorized

TASK_ID = "123e4567-e89b-12d3-a456-426614174000"


def parse(*argv: str, env: dict[str, str] | None = None) -> argparse.Namespace:
    return cli.build_parser(env or {}).parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == cli.EXIT_USAGE
    return capsys.readouterr().err


def test_connection_defaults_to_localhost_without_a_key() -> None:
    args = parse("stats")
    assert (args.url, args.api_key) == (cli.DEFAULT_URL, None)
    assert args.format == "table"


def test_connection_comes_from_the_environment() -> None:
    args = parse("stats", env={"TQ_URL": "http://broker:9000", "TQ_API_KEY": "k"})
    assert (args.url, args.api_key) == ("http://broker:9000", "k")


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://a:1", "--api-key", "k", "stats"],
        ["stats", "--url", "http://a:1", "--api-key", "k"],
        ["keys", "list", "--url", "http://a:1", "--api-key", "k"],
    ],
)
def test_flags_override_the_environment_before_or_after_the_command(argv: list[str]) -> None:
    args = parse(*argv, env={"TQ_URL": "http://env:1", "TQ_API_KEY": "env"})
    assert (args.url, args.api_key) == ("http://a:1", "k")


def test_submit_takes_every_field_of_a_task() -> None:
    args = parse(
        "submit",
        "--type",
        "send_email",
        "--payload-file",
        "email.txt",
        "--priority",
        "200",
        "--schedule-at",
        "2030-01-01T12:00:00Z",
        "--timeout",
        "60",
        "--max-retries",
        "5",
        "--idempotency-key",
        "order-1",
    )
    assert args.handler is cli.cmd_submit
    assert (args.type, args.payload_file, args.payload) == ("send_email", "email.txt", None)
    assert (args.priority, args.timeout_seconds, args.max_retries) == (200, 60, 5)
    assert args.schedule_at == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert args.idempotency_key == "order-1"


def test_submit_leaves_timeout_and_retries_to_the_broker_unless_given() -> None:
    args = parse("submit", "--type", "noop")
    assert (args.priority, args.timeout_seconds, args.max_retries) == (100, None, None)
    assert args.schedule_at is None and args.wait is None and args.json is None


def test_submit_wait_takes_an_optional_number_of_seconds() -> None:
    assert parse("submit", "--type", "noop", "--wait").wait == cli.WAIT_FOREVER
    assert parse("submit", "--type", "noop", "--wait", "2.5").wait == 2.5
    assert parse("wait", TASK_ID).timeout == cli.WAIT_FOREVER
    assert parse("wait", TASK_ID, "--timeout", "30").timeout == 30.0


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_wait_seconds_must_be_a_finite_number(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert "expected a number of seconds" in usage_error(
        capsys, "wait", TASK_ID, "--timeout", value
    )


def test_the_url_falls_back_to_the_workers_variable_name() -> None:
    assert parse("stats", env={"TQ_BROKER_URL": "http://old:1"}).url == "http://old:1"
    both = {"TQ_BROKER_URL": "http://old:1", "TQ_URL": "http://new:2"}
    assert parse("stats", env=both).url == "http://new:2"


def test_list_filters_and_formats() -> None:
    args = parse(
        "list",
        "--status",
        "pending",
        "--type",
        "a",
        "--limit",
        "10",
        "--offset",
        "5",
        "--format",
        "yaml",
    )
    assert (args.status, args.type, args.limit, args.offset, args.format) == (
        "pending",
        "a",
        10,
        5,
        "yaml",
    )


@pytest.mark.parametrize(
    "command",
    [
        ["status", TASK_ID],
        ["list"],
        ["stats"],
        ["workers"],
        ["queue-depth"],
        ["cluster-status"],
        ["keys", "list"],
        ["requeue", TASK_ID],
    ],
)
def test_every_read_command_takes_json_and_yaml(command: list[str]) -> None:
    for fmt in ("json", "yaml"):
        assert parse(*command, "--format", fmt).format == fmt


def test_keys_create_takes_repeated_permissions() -> None:
    args = parse(
        "keys",
        "create",
        "--name",
        "billing",
        "--permission",
        "submit_tasks",
        "--permission",
        "read_tasks",
        "--rate-limit",
        "50",
        "--burst",
        "100",
    )
    assert args.handler is cli.cmd_keys_create
    assert (args.name, args.permission) == ("billing", ["submit_tasks", "read_tasks"])
    assert (args.rate_limit, args.burst) == (50.0, 100)


def test_ids_are_parsed_as_uuids() -> None:
    assert parse("cancel", TASK_ID).task_id == UUID(TASK_ID)
    assert parse("keys", "revoke", TASK_ID).key_id == UUID(TASK_ID)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["status", "not-a-uuid"], "not a UUID"),
        (["--url", "localhost:8080", "stats"], "expected http(s)://host[:port]"),
        (["submit", "--type", "a", "--schedule-at", "2030-01-01T12:00:00"], "time zone"),
        (["submit", "--type", "a", "--schedule-at", "tomorrow"], "RFC 3339"),
        (["submit", "--type", "a", "--payload", "x", "--payload-file", "f"], "not allowed with"),
        (["submit"], "--type"),
        (["list", "--status", "lost"], "invalid choice"),
        (["stats", "--format", "xml"], "invalid choice"),
        (["keys", "create", "--name", "n", "--permission", "root"], "invalid choice"),
        (["keys"], "required"),
        ([], "required"),
    ],
)
def test_bad_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    assert complaint in usage_error(capsys, *argv)


def test_payload_comes_from_text_file_or_nothing(tmp_path: Path) -> None:
    payload = tmp_path / "email.txt"
    payload.write_bytes(b"\x00user@example.com")
    assert (
        cli.read_payload(parse("submit", "--type", "a", "--payload", "héllo")) == "héllo".encode()
    )
    assert cli.read_payload(parse("submit", "--type", "a", "--payload-file", str(payload))) == (
        b"\x00user@example.com"
    )
    assert cli.read_payload(parse("submit", "--type", "a")) == b""


def test_an_unreadable_payload_file_is_a_usage_error_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Port 1 is never a broker: reaching it would be exit 3, not 2.
    argv = ["--url", "http://127.0.0.1:1", "submit", "--type", "a"]
    assert cli.main([*argv, "--payload-file", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("tq-admin: cannot read payload file: ")


def test_a_task_the_wire_models_refuse_is_a_usage_error_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--url", "http://127.0.0.1:1", "submit", "--type", "a", "--priority", "256"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == (
        "tq-admin: priority: Input should be less than or equal to 255\n"
    )


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (Unauthorized(401, "unknown or revoked API key"), "401 unknown or revoked API key"),
        (NotFound(404, f"task {TASK_ID} not found"), f"task {TASK_ID} not found"),
        (Conflict(409, "task x is completed"), "409 task x is completed"),
        (InvalidRequest(None, "priority: too big"), "priority: too big"),
        (TaskQueueError(500, "internal server error"), "500 internal server error"),
    ],
)
def test_errors_are_described_in_one_line(error: TaskQueueError, line: str) -> None:
    assert cli.describe(error) == line
