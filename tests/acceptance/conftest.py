from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
