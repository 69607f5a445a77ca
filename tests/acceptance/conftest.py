from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tq_broker.embedded import EmbeddedPostgres

from .cluster import Cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/acceptance" in str(item.path):
            item.add_marker(pytest.mark.acceptance)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory the embedded server's unprivileged user can reach (not under /root)."""
    path = Path(tempfile.mkdtemp(prefix="tq-acceptance-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(pg: EmbeddedPostgres, database: str, tmp_path: Path) -> Iterator[Cluster]:
    """Brokers and workers on the test's database (test_abort.py has its own, smaller one)."""
    c = Cluster(pg.url(database), pg.conninfo(database), tmp_path)
    try:
        yield c
    finally:
        c.stop()
