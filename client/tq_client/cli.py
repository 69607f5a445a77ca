"""`tq-admin` placeholder until the CLI lands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tq-admin: not built yet", file=sys.stderr)
    return 2
