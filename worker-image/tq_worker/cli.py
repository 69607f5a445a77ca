"""`tq-worker` placeholder until the worker runtime lands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tq-worker: not built yet", file=sys.stderr)
    return 2
