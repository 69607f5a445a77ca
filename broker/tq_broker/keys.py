"""API keys: generated secrets, stored only as SHA-256 hashes, looked up by hash.

The one thing not to break: a secret exists in exactly one place, the response to the request
that created it. It is never stored, logged or returned again; the visible prefix identifies a
key in listings. WebSocket tickets (`tqt_...`) are the same: single-use, short-lived, stored
only as hashes.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from tq_broker.connector import Connector
from tq_broker.errors import NotFound

SECRET_BYTES = 32  # 256 bits of randomness
PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


class Permission(StrEnum):
    SUBMIT_TASKS = "submit_tasks"
    READ_TASKS = "read_tasks"
    CANCEL_TASKS = "cancel_tasks"
    PROCESS_TASKS = "process_tasks"  # workers: register, claim, heartbeat, complete
    MANAGE_SCHEDULES = "manage_schedules"  # periodic schedules: create, read, edit, delete
    ADMIN = "admin"  # everything


_KNOWN = frozenset(p.value for p in Permission)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def generate_secret() -> tuple[str, str]:
    """(prefix, secret): `tq_<prefix>_<43 url-safe characters>`."""
    prefix = "tq_" + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return prefix, f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


@dataclass(frozen=True)
class KeyRecord:
    key_id: UUID
    name: str
    permissions: frozenset[Permission]
    rate_limit: float | None
    burst: int | None
    max_pending: int | None = None  # waiting tasks the key may have; None: no cap


def _record(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        name=row["name"],
        permissions=frozenset(Permission(p) for p in row["permissions"] if p in _KNOWN),
        rate_limit=row["rate_limit"],
        burst=row["burst"],
        max_pending=row.get("max_pending"),
    )


class ApiKeyStore:
    def __init__(self, connector: Connector) -> None:
        self._db = connector

    async def key_insert(
        self,
        name: str,
        permissions: list[Permission],
        rate_limit: float | None,
        burst: int | None,
        max_pending: int | None = None,
    ) -> tuple[str, dict[str, object]]:
        """Create a key; returns the secret (to show once) and the stored row."""
        prefix, secret = generate_secret()
        row = await self._db.fetch_one(
            "key_insert",
            {
                "key_id": uuid4(),
                "name": name,
                "prefix": prefix,
                "secret_hash": hash_secret(secret),
                "permissions": [p.value for p in permissions],
                "rate_limit": rate_limit,
                "burst": burst,
                "max_pending": max_pending,
            },
        )
        assert row is not None
        return secret, row

    async def key_list(self) -> list[dict[str, object]]:
        return await self._db.fetch_all("key_list")

    async def key_revoke(self, key_id: UUID) -> None:
        if await self._db.fetch_one("key_revoke", {"key_id": key_id}) is None:
            raise NotFound(f"key {key_id} not found")

    async def key_get_by_hash(self, secret_hash: bytes) -> KeyRecord | None:
        row = await self._db.fetch_one("key_get_by_hash", {"secret_hash": secret_hash})
        if row is None or not secrets.compare_digest(bytes(row["secret_hash"]), secret_hash):
            return None
        return _record(row)

    async def key_get_by_id(self, key_id: UUID) -> KeyRecord | None:
        """The key, unless it was revoked (or never existed)."""
        row = await self._db.fetch_one("key_get_by_id", {"key_id": key_id})
        return _record(row) if row is not None else None

    async def ws_ticket_insert(
        self, key_id: UUID | None, bootstrap: str | None, ttl_seconds: float
    ) -> str:
        """A new single-use ticket for a stored key, or for a bootstrap key by its bucket."""
        ticket = "tqt_" + secrets.token_urlsafe(SECRET_BYTES)
        await self._db.execute(
            "ws_ticket_insert",
            {
                "ticket_hash": hash_secret(ticket),
                "key_id": key_id,
                "bootstrap": bootstrap,
                "ttl_seconds": ttl_seconds,
            },
        )
        return ticket

    async def ws_ticket_redeem(self, ticket: str) -> KeyRecord | str | None:
        """Use a ticket up: its key's record, or a bootstrap key's bucket (None if the ticket
        is unknown, used, expired, or its key was revoked since)."""
        row = await self._db.fetch_one("ws_ticket_redeem", {"ticket_hash": hash_secret(ticket)})
        if row is None:
            return None
        if row["bootstrap"] is not None:
            return str(row["bootstrap"])
        return _record(row) if row["key_id"] is not None else None

    async def key_touch_many(self, key_ids: list[UUID]) -> None:
        await self._db.execute("key_touch_many", {"key_ids": key_ids})
