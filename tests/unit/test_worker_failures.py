"""The error text of a failed attempt: headline, handler frames first, bounded size."""

from __future__ import annotations

import sys
import textwrap
import types
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tq_client.protocol import ClaimedTask, FailedTask
from tq_worker import Worker
from tq_worker.execution import new_context, start_handler, wait_outcome
from tq_worker.failures import ERROR_MAX_BYTES, error_report
from tq_worker.threads import ThreadRunner


def load(tmp_path: Path, name: str, source: str) -> types.ModuleType:
    """A module written to a real file, so its frames carry that file name."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    module = types.ModuleType(name)
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def raise_through(depth: int, library_depth: int, message: str) -> BaseException:
    def library(n: int) -> None:
        if n:
            library(n - 1)
        raise ValueError(message)

    def handler(n: int) -> None:
        if n:
            handler(n - 1)
        library(library_depth)

    try:
        handler(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_the_report_is_headline_then_traceback_of_the_handler() -> None:
    report = error_report(raise_through(1, 0, "bad size"))
    head, _, body = report.partition("\n\n")
    assert head == "ValueError: bad size"
    assert body.startswith("Traceback (most recent call last):")
    assert "in handler" in body and "in library" in body
    assert body.rstrip().endswith("ValueError: bad size")


def test_chained_exceptions_are_kept() -> None:
    try:
        try:
            {}["sku"]
        except KeyError as exc:
            raise RuntimeError("lookup failed") from exc
    except RuntimeError as exc:
        report = error_report(exc)
    assert report.startswith("RuntimeError: lookup failed\n\n")
    assert "KeyError: 'sku'" in report and "direct cause" in report


def test_a_long_traceback_keeps_the_handlers_frames_and_drops_library_ones(
    tmp_path: Path,
) -> None:
    # 200 distinct library functions, each calling the next (a recursion would be folded
    # into "[Previous line repeated …]" by Python itself).
    chain = "".join(f"def dig{n}():\n    return dig{n + 1}()\n\n" for n in range(200))
    lib = load(
        tmp_path, "deep_library", chain + 'def dig200():\n    raise OSError("disk " + "x" * 100)\n'
    )
    app = load(
        tmp_path,
        "my_handlers",
        """
        import deep_library

        def handle(payload):
            return step_two(payload)

        def step_two(payload):
            return deep_library.dig0()
        """,
    )
    try:
        app.handle(b"")
    except OSError as exc:
        report = error_report(exc, handler_file=app.__file__)
    assert len(report.encode()) <= ERROR_MAX_BYTES
    assert report.startswith("OSError: disk xxx")
    assert "in handle" in report and "in step_two" in report
    assert "… 193 frames of other files omitted …" in report
    assert "in dig193" in report and "in dig192" not in report  # the 8 nearest the raise
    assert report.rstrip().endswith("x" * 100)  # the raising frame and the exception stay
    assert lib.__file__ is not None


def test_the_runtimes_frames_are_not_in_the_report() -> None:
    async def go() -> FailedTask:
        worker = Worker()

        @worker.task("t")
        def broken(payload: bytes) -> bytes:
            raise LookupError("no such image")

        task = ClaimedTask(
            task_id=uuid.uuid4(),
            task_type="t",
            payload=b"",
            priority=100,
            lease_token=uuid.uuid4(),
            lease_expires_at=datetime.now(UTC),
            timeout_seconds=60,
            retry_count=0,
            max_retries=0,
        )
        registered = worker.handlers["t"]
        handle = start_handler(registered, b"", ThreadRunner(), new_context(task, 60))
        outcome = await wait_outcome(task, handle, 30, registered)
        assert isinstance(outcome, FailedTask)
        return outcome

    import asyncio

    outcome = asyncio.run(go())
    assert outcome.error.startswith("LookupError: no such image\n\nTraceback")
    assert "in broken" in outcome.error
    assert "tq_worker/threads.py" not in outcome.error
    assert "tq_worker/execution.py" not in outcome.error
