"""System programs some tests drive (Chromium, chromedriver, promtool, prometheus), found on
PATH. `.ci/run` installs them; where they are missing and CI is unset the tests skip LOUDLY
(a warning in the summary as well as the skip); under CI a missing one is a failure."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest


def require_programs(*names: str, debian_packages: str) -> dict[str, str]:
    """The paths of `names`; skips (or fails under CI) when any is missing."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        message = (
            f"{', '.join(missing)} not found: `apt-get install -y {debian_packages}` "
            "(.ci/run installs them)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run these tests")
        warnings.warn(f"SKIPPING: {message}", stacklevel=2)
        pytest.skip(message)
    return {name: path for name, path in found.items() if path is not None}
