"""`tq-worker --app module:attr`: load a `Worker`, run it until SIGTERM/SIGINT, drain, exit 0.

Settings come from flags, then the environment (TQ_URL — or its older name TQ_BROKER_URL —,
TQ_API_KEY, TQ_CONCURRENCY, TQ_LOG_FORMAT, TQ_LOG_LEVEL), then defaults. The one thing not to
break: a bad `--app` or setting is one clear line on stderr and exit code 2, never a
traceback; a broker that is down is waited for, not fatal; a broker that refuses the key
says which setting to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tq_client.connection import api_key, broker_url
from tq_client.logs import add_logging_arguments, configure_from_arguments
from tq_worker.app import Worker
from tq_worker.broker_client import BrokerRejected
from tq_worker.config import (
    BROKER_URL_DEFAULT,
    CONCURRENCY_DEFAULT,
    DRAIN_SECONDS_DEFAULT,
    RuntimeConfig,
)
from tq_worker.runtime import Runtime

log = logging.getLogger("tq_worker")
EXIT_USAGE = 2


class AppLoadError(Exception):
    """`--app` does not name a Worker."""


def load_app(spec: str) -> Worker:
    """Import `module:attr` (attr may be dotted) from the current directory or sys.path."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppLoadError(f"--app must look like module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the app may live in the cwd
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for name in attr_path.split("."):
        if not hasattr(target, name):
            raise AppLoadError(f"{spec!r}: {type(target).__name__} has no attribute {name!r}")
        target = getattr(target, name)
    if not isinstance(target, Worker):
        raise AppLoadError(f"{spec!r} is a {type(target).__name__}, not a tq_worker.Worker")
    if not target.task_types:
        raise AppLoadError(f'{spec!r} has no task handlers (use @worker.task("name"))')
    return target


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tq-worker", description=__doc__.split("\n")[0])
    parser.add_argument("--app", required=True, help="module:attribute of a tq_worker.Worker")
    parser.add_argument(
        "--url",
        "--broker-url",
        dest="broker_url",
        default=broker_url(env, BROKER_URL_DEFAULT),
        help=f"broker base URL (TQ_URL or TQ_BROKER_URL, default {BROKER_URL_DEFAULT})",
    )
    parser.add_argument(
        "--api-key",
        default=api_key(env),
        help="API key with the process_tasks permission (TQ_API_KEY, which keeps it out of ps)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"tasks run at once (TQ_CONCURRENCY, default {CONCURRENCY_DEFAULT})",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="claimed tasks kept waiting (default: concurrency)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=DRAIN_SECONDS_DEFAULT,
        help=f"on SIGTERM, how long running tasks may finish (default {DRAIN_SECONDS_DEFAULT:g})",
    )
    add_logging_arguments(parser)
    return parser


def build_config(args: argparse.Namespace, env: Mapping[str, str]) -> RuntimeConfig:
    concurrency = args.concurrency
    if concurrency is None:
        raw = env.get("TQ_CONCURRENCY", str(CONCURRENCY_DEFAULT))
        try:
            concurrency = int(raw)
        except ValueError:
            raise ValueError(f"TQ_CONCURRENCY must be an integer, got {raw!r}") from None
    return RuntimeConfig(
        broker_url=args.broker_url,
        api_key=args.api_key,
        concurrency=concurrency,
        prefetch=args.prefetch,
        drain_seconds=args.drain_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    args = _parser(env).parse_args(argv)
    try:
        configure_from_arguments(args)
    except ValueError as exc:  # a bad TQ_LOG_FORMAT / TQ_LOG_LEVEL
        print(f"tq-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    try:
        config = build_config(args, env)
        app = load_app(args.app)
    except (AppLoadError, ValueError) as exc:
        print(f"tq-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log.info(
        "worker %s -> %s, concurrency %d", config.worker_id, config.broker_url, config.concurrency
    )
    return run(Runtime(app, config))


def run(runtime: Runtime) -> int:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.request_stop)
        await runtime.run()

    try:
        _run_loop(serve)
    except BrokerRejected as exc:
        print(f"tq-worker: {refusal_advice(exc, runtime.config)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"tq-worker: {exc}: {exc.__cause__!r}", file=sys.stderr)
        return 1
    return 0


def refusal_advice(exc: BrokerRejected, config: RuntimeConfig) -> str:
    """What the operator should change when the broker refuses to register this worker."""
    where = f"the broker at {config.broker_url}"
    answer = f"HTTP {exc.status_code}: {exc.reason}"
    if exc.status_code == 401:
        if config.api_key is None:
            return (
                f"{where} needs an API key ({answer}): set --api-key or TQ_API_KEY to a key "
                "with the process_tasks permission"
            )
        return (
            f"{where} does not accept this API key ({answer}): check --api-key / TQ_API_KEY "
            "(unknown, revoked or mistyped key), and --url / TQ_URL (the right broker?)"
        )
    if exc.status_code == 403:
        return (
            f"{where} refused the API key ({answer}): it lacks the process_tasks permission; "
            "create a key with it (tq-admin keys create --permission process_tasks)"
        )
    return f"{where} refused this worker: {answer}"


def _run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on uvloop when it is installed, else on asyncio's default loop."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop  # optional: the default loop works too

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
