"""One logging setup for every entry point (broker, worker, tq-admin): text or JSON lines.

`configure_logging(format, level)` puts one stderr handler on the root logger; uvicorn's loggers
(`uvicorn_log_config`) get no handlers of their own and propagate to it, so its access and
error lines come out in the same format as ours. The one thing not to break: a JSON line is one
complete JSON object per line, whatever the message holds (newlines and tracebacks included),
so a log shipper never has to guess where a record ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_FORMAT_ENV = "TQ_LOG_FORMAT"
LOG_LEVEL_ENV = "TQ_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra=` and goes into
# the JSON object as a field of its own.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (RFC 3339, UTC), level, logger, message, and `exc` (the
    traceback) when there is one, plus any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format must be one of {LOG_FORMATS}, not {log_format!r}")


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"log level must be one of {LOG_LEVELS}, not {level!r}")
    return value


def configure_logging(
    log_format: LogFormat = "text", level: str | int = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root logger's handlers with one in this format (idempotent); the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(level))
    return handler


def uvicorn_log_config(level: str | int = "info") -> dict[str, Any]:
    """`uvicorn.Config(log_config=...)`: uvicorn's loggers keep their levels but no handlers of
    their own, and propagate to the root handler of `configure_logging` (one format)."""
    name = logging.getLevelName(_level(level))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "uvicorn": {"handlers": [], "level": name, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": name, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": name, "propagate": True},
        },
    }


def default_log_format() -> LogFormat:
    """TQ_LOG_FORMAT, else text. An unknown value is an error, not a silent fallback."""
    value = os.environ.get(LOG_FORMAT_ENV, "text").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV} must be one of {LOG_FORMATS}, not {value!r}")
    return "json" if value == "json" else "text"


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """--log-format (TQ_LOG_FORMAT, default text) and --log-level (TQ_LOG_LEVEL, default info)."""
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help=f"text or json lines ({LOG_FORMAT_ENV}, default text)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help=f"({LOG_LEVEL_ENV}, default info)",
    )


def configure_from_arguments(args: argparse.Namespace) -> logging.Handler:
    """configure_logging from add_logging_arguments' flags, falling back to the environment.
    ValueError names a bad TQ_LOG_FORMAT / TQ_LOG_LEVEL."""
    log_format: LogFormat = args.log_format or default_log_format()
    level = args.log_level or os.environ.get(LOG_LEVEL_ENV, "info").strip().lower() or "info"
    return configure_logging(log_format, level)
