"""No secret in any log line: credentials in query strings, and anything shaped like one of our
API keys, are masked in every record that reaches a handler of the broker's loggers (uvicorn's
"WebSocket /ws?token=..." line was one).

The one thing not to break: the filter sits on the *handlers*, so it also sees records that
propagate from child loggers (a filter on a logger sees only that logger's own records).
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"
# ?token=..., &ticket=..., and the like
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:token|ticket|api_key|apikey|access_token|key|password)=)[^&\s\"'#]+"
)
# tq_<prefix>_<secret>: keep the visible prefix (it names the key), mask the secret
_API_KEY = re.compile(r"\b(tq_[A-Za-z0-9]{4,16})_[A-Za-z0-9_-]{16,}")
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "tq_broker")


def redact(text: str) -> str:
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return _API_KEY.sub(lambda m: f"{m.group(1)}_{MASK}", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def install(loggers: tuple[str, ...] = LOGGERS) -> None:
    """Put the filter on every handler of these loggers (idempotent)."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
