"""The shared logging setup: one format for our loggers and uvicorn's, JSON one object a line."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from tq_client.logs import configure_logging, default_log_format, uvicorn_log_config


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_are_one_object_each_with_extras_and_traceback() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = logging.getLogger("tq_test")
    log.info("task finished\nsecond line", extra={"task_id": "abc", "duration_ms": 12.5})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    log.debug("not at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "task finished\nsecond line"
    assert (first["level"], first["logger"], first["task_id"]) == ("info", "tq_test", "abc")
    assert first["duration_ms"] == 12.5
    assert first["ts"].endswith("+00:00")
    assert "ValueError: boom" in second["exc"]


def test_uvicorn_loggers_write_through_the_one_root_handler() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    logging.config.dictConfig(uvicorn_log_config("info"))
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/health", "1.1", 200
    )
    logging.getLogger("uvicorn.error").info("Started server process")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["logger"] for r in records] == ["uvicorn.access", "uvicorn.error"]
    assert records[0]["message"] == '127.0.0.1:5 - "GET /health HTTP/1.1" 200'


def test_text_format_and_configuring_twice_keeps_one_handler() -> None:
    out = io.StringIO()
    configure_logging("text", "warning", stream=io.StringIO())
    configure_logging("text", "warning", stream=out)
    logging.getLogger("tq_test").warning("careful")
    assert len(logging.getLogger().handlers) == 1
    assert out.getvalue().rstrip().endswith("WARNING tq_test: careful")


def test_bad_format_level_and_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("text", "loud")
    monkeypatch.setenv("TQ_LOG_FORMAT", "JSON")
    assert default_log_format() == "json"
    monkeypatch.setenv("TQ_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="TQ_LOG_FORMAT"):
        default_log_format()
