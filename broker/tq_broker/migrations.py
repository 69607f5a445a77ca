"""Forward-only schema migrations, applied under an advisory lock.

The one thing not to break: migrations never change once released. A new schema change is a
new numbered file in `sql/migrations/` and the same change in `sql/schema.sql`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from tq_broker.connector import Connector

log = logging.getLogger(__name__)

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    folder = resources.files("tq_broker").joinpath("sql/migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migration versions must be 1..N without gaps")
    return found


async def migrate(connector: Connector) -> list[int]:
    """Apply every migration not yet applied; return the versions applied now.

    Replicas starting together serialise on a transaction-scoped advisory lock; the second one
    finds the work done. Each run is one transaction, so a failure applies nothing.
    """
    async with connector.transaction() as tx:
        await tx.fetch_one("migration_lock")
        await tx.execute("migration_ensure_table")
        applied = {row["version"] for row in await tx.fetch_all("migration_applied")}
        done: list[int] = []
        for migration in available_migrations():
            if migration.version in applied:
                continue
            log.info("applying migration %04d_%s", migration.version, migration.name)
            await tx.execute_script(migration.sql)
            record = {"version": migration.version, "name": migration.name}
            await tx.execute("migration_record", record)
            done.append(migration.version)
    return done
