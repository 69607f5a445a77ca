"""Several brokers on one PostgreSQL for the benchmarks: the first (bench `Broker`) starts the
embedded server; the others are the shared harness's `BrokerProcess` (tests/support) given its
--database-url. None has a metrics or gRPC listener (BrokerProcess turns them off), so they
cannot collide with each other or with other brokers on the machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from _common import Broker

# Importable: _common put the repository on the path.
from tests.support.processes import BrokerProcess


@contextlib.contextmanager
def cluster(replicas: int, env: dict[str, str] | None = None) -> Iterator[tuple[Broker, list[str]]]:
    """A broker with its embedded PostgreSQL plus replicas-1 more on the same database; yields
    the first and every replica's URL (the first's first)."""
    broker = Broker(env=dict(env or {})).start()
    extra: list[BrokerProcess] = []
    try:
        assert broker.tmp is not None
        for i in range(1, replicas):
            replica = BrokerProcess(
                ["--database-url", broker.database_url(), "--log-level", "warning"],
                broker.tmp / f"replica-{i}.log",
                env=dict(env or {}),
            )
            extra.append(replica.start())
        yield broker, [broker.url, *(r.url for r in extra)]
    finally:
        for r in extra:
            r.stop()
        broker.stop()


def broker_processes(broker: Broker) -> list[Any]:
    """psutil handles of the broker processes: the first one and every replica (children of
    this script started with --database-url)."""
    import psutil

    assert broker.proc is not None
    procs = [psutil.Process(broker.proc.pid)]
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.pid != broker.proc.pid and "--database-url" in child.cmdline():
                procs.append(child)
    return procs
