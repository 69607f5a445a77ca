"""`tq-operator`: the kopf operator. Its reconciler is not built yet (the operator issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print(
        "tq-operator: the WorkerPool operator is not part of this release yet; "
        "see the operator issue in the tracker",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
