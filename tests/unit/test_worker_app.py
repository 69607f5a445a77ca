"""The task SDK registry and `--app` loading: pure logic, no broker."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tq_worker import PermanentFailure, Worker
from tq_worker.app import is_async_callable
from tq_worker.cli import AppLoadError, load_app, main


def test_task_registers_sync_and_async_handlers_and_returns_them_unchanged() -> None:
    worker = Worker()

    def sync(payload: bytes) -> bytes:
        return payload

    async def asynchronous(payload: bytes) -> bytes:
        return payload

    assert worker.task("b.sync")(sync) is sync
    assert worker.task("a:async")(asynchronous) is asynchronous
    assert worker.task_types == ["a:async", "b.sync"]
    assert worker.handlers["b.sync"].is_async is False
    assert worker.handlers["a:async"].is_async is True
    assert worker.get("missing") is None


def test_registering_a_task_type_twice_is_an_error() -> None:
    worker = Worker()
    worker.task("send_email")(lambda payload: payload)
    with pytest.raises(ValueError, match="already has a handler"):
        worker.task("send_email")(lambda payload: payload)


@pytest.mark.parametrize("name", ["", "has space", "slash/type", "x" * 129, "ünïcode"])
def test_task_types_outside_the_wire_pattern_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid task type"):
        Worker().task(name)


def test_async_detection_sees_partials_and_async_call_methods() -> None:
    async def handler(payload: bytes, extra: int) -> bytes:
        return payload

    class AsyncCallable:
        async def __call__(self, payload: bytes) -> bytes:
            return payload

    class SyncCallable:
        def __call__(self, payload: bytes) -> bytes:
            return payload

    assert is_async_callable(functools.partial(handler, extra=1))
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(SyncCallable())
    assert not is_async_callable(len)


def test_permanent_failure_is_an_exception_users_can_subclass() -> None:
    class BadAddress(PermanentFailure):
        pass

    assert issubclass(BadAddress, Exception)


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "good_app.py").write_text(
        "from tq_worker import Worker\n"
        "worker = Worker()\n"
        "empty = Worker()\n"
        "not_a_worker = 42\n"
        "@worker.task('echo')\n"
        "def echo(payload):\n"
        "    return payload\n"
        "class Holder:\n"
        "    inner = worker\n"
    )
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("good_app", "broken_app"):
        sys.modules.pop(name, None)


def test_load_app_finds_a_worker_by_module_and_dotted_attribute(app_dir: Path) -> None:
    assert load_app("good_app:worker").task_types == ["echo"]
    assert load_app("good_app:Holder.inner") is load_app("good_app:worker")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("good_app", "must look like module:attribute"),
        ("good_app:", "must look like module:attribute"),
        ("no_such_module_xyz:worker", "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
        ("broken_app:worker", "cannot import 'broken_app': RuntimeError: boom at import"),
        ("good_app:missing", "has no attribute 'missing'"),
        ("good_app:not_a_worker", "is a int, not a tq_worker.Worker"),
        ("good_app:empty", "has no task handlers"),
    ],
)
def test_load_app_explains_what_is_wrong_in_one_line(
    app_dir: Path, spec: str, message: str
) -> None:
    with pytest.raises(AppLoadError) as caught:
        load_app(spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_exits_2_with_one_line_on_stderr_for_a_bad_app(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--app", "good_app:missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tq-worker: ") and err.count("\n") == 1
