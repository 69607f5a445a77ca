"""The images tier: build both images (and the example worker) once per run, then test them.

Needs podman and mmdebstrap (`.ci/run` installs them). Without them the tier is skipped
loudly, unless ``CI`` is set, in which case it fails: CI must prove the images.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.images import rootfs

_SIZES_KEY = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/images/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.images)


@pytest.fixture(scope="session")
def built_images(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    log_path = tmp_path_factory.mktemp("images") / "build.log"
    try:
        rootfs.build_all(log_path)
    except rootfs.ImagesUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the images tier must run: {exc}", pytrace=False)
        msg = f"SKIPPING the images tier: {exc}"
        print(f"\n{'!' * 78}\n{msg}\n{'!' * 78}", file=sys.__stderr__, flush=True)
        pytest.skip(msg)
    base = rootfs.size_bytes(rootfs.BASE_IMAGE)
    sizes = pytestconfig.stash.setdefault(_SIZES_KEY, {})
    for name, image in rootfs.IMAGES.items():
        sizes[name] = (rootfs.size_bytes(image) - base) / 1e6
    return rootfs.IMAGES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    sizes = terminalreporter.config.stash.get(_SIZES_KEY, None)
    if not sizes:
        return
    terminalreporter.section("image sizes (own layers, above the python:3.11-slim base)")
    for name, megabytes in sizes.items():
        terminalreporter.write_line(f"{name:16} {megabytes:7.1f} MB")


def image_root(image: str) -> Path:
    return rootfs.mount(image)
