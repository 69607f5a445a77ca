"""The error a failed attempt reports: exception type and message, then a bounded traceback.

    ValueError: image too large

    Traceback (most recent call last):
      File "/app/resize.py", line 12, in resize
        check(job)
      ...

The first line stays `Type: message`, so lists and alerts can show it alone. The traceback
starts at the handler (the runtime's own frames above it are dropped: they are the same for
every task) and, chained exceptions included, is cut to `ERROR_MAX_BYTES` of UTF-8. The one
thing not to break: when it must be cut, frames from the handler's own file are kept (and the
frame that raised): library frames in between go first, then the text is cut at the end.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable

ERROR_MAX_BYTES = 8 * 1024
# When cutting: first keep this many frames nearest the raise, then fewer.
KEEP_INNERMOST_STEPS = (8, 3, 1)
_ELLIPSIS = "…"
# Frames of these files are the runtime calling the handler, not the handler.
_RUNTIME_FILES = frozenset(
    os.path.join(os.path.dirname(__file__), name)
    for name in ("execution.py", "threads.py", "context.py")
)


def headline(exc: BaseException) -> str:
    """`ExceptionType: message`, or the type alone when the message is empty."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def truncate(text: str, limit_bytes: int = ERROR_MAX_BYTES) -> str:
    """At most `limit_bytes` of UTF-8, ending in … when cut (never inside a character)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit_bytes:
        return text
    room = limit_bytes - len(_ELLIPSIS.encode("utf-8"))
    return encoded[:room].decode("utf-8", errors="ignore") + _ELLIPSIS


def error_report(
    exc: BaseException, handler_file: str | None = None, limit_bytes: int = ERROR_MAX_BYTES
) -> str:
    """The headline, a blank line, and the traceback of `exc` within `limit_bytes`."""
    head = headline(exc)
    if exc.__traceback__ is None and exc.__cause__ is None and exc.__context__ is None:
        return truncate(head, limit_bytes)
    report = traceback.TracebackException.from_exception(exc)
    _drop_runtime_frames(report)
    budget = limit_bytes - len(head.encode("utf-8")) - 2
    body = _fit(report, handler_file, budget)
    return truncate(f"{head}\n\n{body}" if body else head, limit_bytes)


def _drop_runtime_frames(report: traceback.TracebackException) -> None:
    """Only the frames from the handler down: leading runtime frames say nothing."""
    stack = report.stack
    start = 0
    while start < len(stack) and stack[start].filename in _RUNTIME_FILES:
        start += 1
    if start:
        del stack[:start]


def _fit(report: traceback.TracebackException, handler_file: str | None, budget: int) -> str:
    """The traceback text; frames the handler did not write are dropped until it fits."""
    text = _render(report)
    if len(text.encode("utf-8")) <= budget:
        return text
    # Library frames go first, those farthest from the raise first: the few innermost frames
    # say how the library got there, so they are kept while there is room.
    for keep_innermost in KEEP_INNERMOST_STEPS:
        for each in _chain(report):
            _thin(each, handler_file, keep_innermost)
            text = _render(report)
            if len(text.encode("utf-8")) <= budget:
                return text
    return truncate(text, max(budget, 0))


def _chain(report: traceback.TracebackException) -> Iterable[traceback.TracebackException]:
    """The exception and those it was chained from, outermost (the one raised) last."""
    seen: list[traceback.TracebackException] = []
    current: traceback.TracebackException | None = report
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return reversed(seen)


class _Omitted(traceback.FrameSummary):
    """Stands for frames cut from a traceback that must fit."""

    def __init__(self, count: int) -> None:
        super().__init__("<omitted>", None, "", lookup_line=False, line="")
        self.count = count


class _Stack(traceback.StackSummary):
    def format_frame_summary(self, frame_summary: traceback.FrameSummary) -> str:
        if isinstance(frame_summary, _Omitted):
            return f"  … {frame_summary.count} frames of other files omitted …\n"
        return super().format_frame_summary(frame_summary)


def _thin(
    report: traceback.TracebackException, handler_file: str | None, keep_innermost: int
) -> None:
    """Keep the outermost frame, the `keep_innermost` frames nearest the raise and the handler
    file's frames; each run of other frames becomes one `… N frames omitted …` line (runs
    already omitted by a previous pass count in)."""
    stack = report.stack
    tail = len(stack) - keep_innermost
    kept: list[traceback.FrameSummary] = []
    gap = 0
    for i, frame in enumerate(stack):
        mine = handler_file is not None and frame.filename == handler_file
        if isinstance(frame, _Omitted):
            gap += frame.count
        elif i == 0 or i >= tail or mine:
            if gap:
                kept.append(_Omitted(gap))
                gap = 0
            kept.append(frame)
        else:
            gap += 1
    report.stack = _Stack(kept)


def _render(report: traceback.TracebackException) -> str:
    return "".join(report.format()).rstrip("\n")
