"""One way to wait for something in the process tiers: poll until it holds, or fail saying what
did not happen. Never a sleep sized to a guess."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """`check()` until it returns something true, and that; AssertionError naming `what` once
    `timeout` seconds have passed (checked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
