"""The named SQL statements of `sql/queries.sql`, loaded once.

A block starts with a line `-- name --`; its first comment line describes it. Nothing else in
the broker writes SQL text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK_START = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def parse_named_blocks(text: str) -> dict[str, str]:
    """Split a file of `-- name --` blocks into {name: statement}."""
    parts = _BLOCK_START.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"duplicate query name {name!r}")
        statement = "\n".join(
            line for line in body.strip().splitlines() if not line.lstrip().startswith("--")
        ).strip()
        blocks[name] = statement.rstrip(";")
    return blocks


@cache
def queries() -> dict[str, str]:
    text = resources.files("tq_broker").joinpath("sql/queries.sql").read_text(encoding="utf-8")
    return parse_named_blocks(text)
