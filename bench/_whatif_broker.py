"""Diagnostic launcher: `tq-broker` with what-if patches applied in memory (no file changes).

    python _whatif_broker.py PATCH[,PATCH] [tq-broker args]

Patches (each models a suggested broker change, to measure it before anyone makes it):
  async-deps   the request-scoped dependencies of tq_broker/api/deps.py as `async def`
               (FastAPI runs a plain `def` dependency in a worker thread, per request).
  none         no patch (the same launcher, for a fair comparison).
"""

# no `from __future__ import annotations`: FastAPI must see the real `Request` annotation

import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any


def _async_deps() -> None:
    from fastapi import Depends, Request

    from tq_broker.api import deps

    def make(attr: str) -> Callable[[Request], Awaitable[Any]]:
        async def dep(request: Request) -> Any:
            return getattr(request.app.state, attr)

        return dep

    for alias, attr in (
        ("StoreDep", "store"),
        ("SettingsDep", "settings"),
        ("ElectorDep", "elector"),
        ("WorkerStoreDep", "worker_store"),
        ("NotifierDep", "notifier"),
    ):
        if hasattr(deps, alias):  # the routes import these aliases after this patch
            annotated_type = getattr(deps, alias).__origin__
            setattr(deps, alias, Annotated[annotated_type, Depends(make(attr))])


def _none() -> None:
    pass


PATCHES: dict[str, Callable[[], None]] = {"async-deps": _async_deps, "none": _none}


def main() -> int:
    names, argv = sys.argv[1].split(","), sys.argv[2:]
    for name in names:
        PATCHES[name]()

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)  # uvicorn restores it and re-raises SIGTERM at exit
    from tq_broker.cli import main as broker_main

    try:
        return broker_main(argv)
    except SystemExit:
        return 0


if __name__ == "__main__":
    sys.exit(main())
