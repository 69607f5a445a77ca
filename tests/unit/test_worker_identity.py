"""Worker ids, runtime settings and their environment fallbacks."""

from __future__ import annotations

import re

import pytest

from tq_client.protocol import WORKER_ID_PATTERN
from tq_worker.cli import _parser, build_config
from tq_worker.config import RuntimeConfig, new_worker_id, sanitize


def test_worker_id_is_worker_host_pid_random6() -> None:
    worker_id = new_worker_id(hostname="pod-7f9c", pid=4242)
    assert re.fullmatch(r"worker-pod-7f9c-4242-[a-z0-9]{6}", worker_id)


def test_worker_ids_differ_between_processes_on_the_same_host() -> None:
    ids = {new_worker_id(hostname="same", pid=1) for _ in range(200)}
    assert len(ids) == 200


@pytest.mark.parametrize(
    ("hostname", "expected_host"),
    [("my host/ü.local", "my-host-.local"), ("", "unknown"), ("a:b_c.d-e", "a:b_c.d-e")],
)
def test_hostnames_are_sanitised_to_the_wire_alphabet(hostname: str, expected_host: str) -> None:
    worker_id = new_worker_id(hostname=hostname, pid=1)
    assert worker_id.startswith(f"worker-{expected_host}-1-")
    assert re.fullmatch(WORKER_ID_PATTERN, worker_id)


def test_a_very_long_hostname_is_cut_so_the_id_fits_the_wire_limit() -> None:
    worker_id = new_worker_id(hostname="h" * 500, pid=123456)
    assert len(worker_id) == 200
    assert re.fullmatch(WORKER_ID_PATTERN, worker_id)
    assert re.search(r"-123456-[a-z0-9]{6}$", worker_id)


def test_default_id_uses_this_process() -> None:
    import os

    assert f"-{os.getpid()}-" in new_worker_id()
    assert sanitize("a b") == "a-b"


def test_prefetch_defaults_to_concurrency_so_at_most_twice_concurrency_is_held() -> None:
    config = RuntimeConfig(concurrency=8)
    assert (config.prefetch_count, config.capacity) == (8, 16)
    assert RuntimeConfig(concurrency=8, prefetch=0).capacity == 8


@pytest.mark.parametrize(
    "fields",
    [
        {"concurrency": 0},
        {"prefetch": -1},
        {"drain_seconds": -1.0},
        {"concurrency": 6000},  # + default prefetch 6000 > 10,000 leases per heartbeat
    ],
)
def test_invalid_settings_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RuntimeConfig(**fields)  # type: ignore[arg-type]


def test_cli_falls_back_to_the_environment_then_defaults() -> None:
    env = {"TQ_BROKER_URL": "http://broker:9000", "TQ_API_KEY": "k", "TQ_CONCURRENCY": "7"}
    config = build_config(_parser(env).parse_args(["--app", "m:w"]), env)
    assert (config.broker_url, config.api_key, config.concurrency) == ("http://broker:9000", "k", 7)
    assert config.drain_seconds == 30.0

    defaults = build_config(_parser({}).parse_args(["--app", "m:w"]), {})
    assert (defaults.broker_url, defaults.api_key) == ("http://127.0.0.1:8080", None)


def test_cli_flags_win_over_the_environment() -> None:
    env = {"TQ_BROKER_URL": "http://env:1", "TQ_CONCURRENCY": "7"}
    argv = [
        "--app",
        "m:w",
        "--broker-url",
        "http://flag:2",
        "--concurrency",
        "3",
        "--prefetch",
        "1",
        "--drain-seconds",
        "5",
    ]
    config = build_config(_parser(env).parse_args(argv), env)
    assert (config.broker_url, config.concurrency, config.prefetch_count) == ("http://flag:2", 3, 1)
    assert config.drain_seconds == 5.0


def test_a_non_numeric_concurrency_in_the_environment_is_a_clear_error() -> None:
    env = {"TQ_CONCURRENCY": "lots"}
    with pytest.raises(ValueError, match="TQ_CONCURRENCY must be an integer"):
        build_config(_parser(env).parse_args(["--app", "m:w"]), env)


def test_tq_url_wins_over_its_old_name_and_flags_win_over_both() -> None:
    env = {"TQ_URL": "http://new:1", "TQ_BROKER_URL": "http://old:2", "TQ_API_KEY": "env-key"}
    config = build_config(_parser(env).parse_args(["--app", "m:w"]), env)
    assert (config.broker_url, config.api_key) == ("http://new:1", "env-key")
    flags = ["--app", "m:w", "--url", "http://flag:3", "--api-key", "flag-key"]
    config = build_config(_parser(env).parse_args(flags), env)
    assert (config.broker_url, config.api_key) == ("http://flag:3", "flag-key")
