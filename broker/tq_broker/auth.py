"""Who is calling, and may they: API-key authentication, permissions and rate limits.

A request carries `Authorization: Bearer <key>`. The key is looked up by the SHA-256 of its
secret (cached for `cache_seconds`, so a revocation reaches every replica within that time),
then its permission is checked, then its rate limit.

The one thing not to break: the order 401 (who?) → 403 (may they?) → 429 (not now), and a
secret never reaches a log line or an error message.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar
from uuid import UUID

from tq_broker.errors import BrokerError, StoreUnavailable
from tq_broker.keys import ApiKeyStore, KeyRecord, Permission, hash_secret
from tq_broker.ratelimit import ClusterRateLimiter, Decision
from tq_broker.task_store import ANYONE, Submitter

log = logging.getLogger(__name__)

MAX_AUTHORIZATION_HEADER = 512
CACHE_SECONDS_DEFAULT = 5.0
CACHE_ENTRIES_MAX = 10_000
K = TypeVar("K")
V = TypeVar("V")
TICKET_SECONDS = 30.0  # a WebSocket ticket must be used this soon


class Unauthenticated(BrokerError):
    """No usable API key (401)."""


class Forbidden(BrokerError):
    """The key lacks the permission (403)."""


class RateLimited(BrokerError):
    """The key is over its rate limit (429)."""

    def __init__(self, decision: Decision, message: str = "Rate limit exceeded") -> None:
        super().__init__(message)
        self.decision = decision


@dataclass(frozen=True)
class Principal:
    bucket: str  # the rate-limit bucket: the key id
    key_id: UUID | None  # None for the bootstrap admin key
    name: str
    permissions: frozenset[Permission]
    rate_limit: float
    burst: int
    max_pending: int | None = None  # the key's cap on waiting tasks

    def may(self, permission: Permission) -> bool:
        return Permission.ADMIN in self.permissions or permission in self.permissions


@dataclass(frozen=True)
class Credentials:
    """What a caller presented: an Authorization header, a WebSocket ticket, or a principal
    that the request guard already authenticated."""

    header: str | None = None
    ticket: str | None = None
    principal: Principal | None = None


@dataclass(frozen=True)
class Authorized:
    principal: Principal
    decision: Decision | None  # None when the call is not rate-limited


@dataclass(frozen=True)
class BootstrapKey:
    """A key given in the broker's environment rather than created through the API: the admin
    key, and the chart's worker and operator keys, each with only what its user needs."""

    name: str  # also its rate-limit bucket: bootstrap-<name>
    secret: str
    permissions: frozenset[Permission]


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool
    bootstrap_admin_key: str | None
    rate_limit: float
    burst: int
    cache_seconds: float = CACHE_SECONDS_DEFAULT
    more_bootstrap_keys: tuple[BootstrapKey, ...] = ()

    def bootstrap_keys(self) -> tuple[BootstrapKey, ...]:
        admin = (
            (BootstrapKey("admin", self.bootstrap_admin_key, frozenset({Permission.ADMIN})),)
            if self.bootstrap_admin_key
            else ()
        )
        return admin + self.more_bootstrap_keys


def submitter_of(principal: Principal | None) -> Submitter:
    """Idempotency keys are per API key (another key's same Idempotency-Key is a new task and
    reveals nothing), and so is the optional cap on waiting tasks. Auth off: one scope."""
    if principal is None:
        return ANYONE
    return Submitter(principal.bucket, principal.key_id, principal.max_pending)


def actor_of(principal: Principal | None) -> str:
    """Who did something, as recorded on the task (an abort): the key's name and id."""
    if principal is None:
        return "anonymous (auth off)"
    if principal.key_id is None:
        return principal.name
    return f"{principal.name} ({principal.key_id})"


def bearer_token(header: str | None) -> str:
    if header is None:
        raise Unauthenticated("missing API key: send Authorization: Bearer <key>")
    if len(header) > MAX_AUTHORIZATION_HEADER:
        raise Unauthenticated("malformed Authorization header")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isprintable() or " " in token:
        raise Unauthenticated("malformed Authorization header: expected Bearer <key>")
    return token


class _Expiring(Generic[K, V]):
    """Answers remembered for `seconds`, the newest CACHE_ENTRIES_MAX of them."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(found and fresh, the answer)."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (value, time.monotonic() + self._seconds)
        self._entries.move_to_end(key)
        while len(self._entries) > CACHE_ENTRIES_MAX:
            self._entries.popitem(last=False)

    def drop(self, keep: Callable[[K, V], bool]) -> None:
        for key, (value, _) in list(self._entries.items()):
            if not keep(key, value):
                del self._entries[key]


class Authenticator:
    def __init__(self, keys: ApiKeyStore, limiter: ClusterRateLimiter, config: AuthConfig):
        self._keys = keys
        self._limiter = limiter
        self.config = config
        self._bootstrap = {
            hash_secret(key.secret): Principal(
                f"bootstrap-{key.name}",
                None,
                f"bootstrap-{key.name}",
                key.permissions,
                config.rate_limit,
                config.burst,
            )
            for key in config.bootstrap_keys()
        }
        # key hash -> its principal (None: unknown or revoked), and key id -> still valid
        self._cache: _Expiring[bytes, Principal | None] = _Expiring(config.cache_seconds)
        self._revalidated: _Expiring[UUID, bool] = _Expiring(config.cache_seconds)
        self._used: set[UUID] = set()

    def forget(self, key_id: UUID) -> None:
        """Drop a revoked key from this replica's cache at once."""
        self._revalidated.drop(lambda known, _: known != key_id)
        self._cache.drop(lambda _, principal: principal is None or principal.key_id != key_id)

    def _bootstrap_principal(self, digest: bytes) -> Principal | None:
        found = None
        for known, principal in self._bootstrap.items():  # a few; compare every one
            if secrets.compare_digest(digest, known):
                found = principal
        return found

    def _bootstrap_named(self, bucket: str) -> Principal | None:
        return next((p for p in self._bootstrap.values() if p.bucket == bucket), None)

    async def authenticate(self, header: str | None) -> Principal:
        digest = hash_secret(bearer_token(header))
        bootstrap = self._bootstrap_principal(digest)
        if bootstrap is not None:
            return bootstrap
        principal = await self._lookup(digest)
        if principal is None:
            raise Unauthenticated("unknown or revoked API key")
        if principal.key_id is not None:
            self._used.add(principal.key_id)
        return principal

    async def _lookup(self, digest: bytes) -> Principal | None:
        found, cached = self._cache.get(digest)
        if found:
            return cached
        record = await self._keys.key_get_by_hash(digest)
        principal = self._principal(record) if record else None
        self._cache.put(digest, principal)
        return principal

    async def issue_ticket(self, principal: Principal | None) -> str:
        """A single-use WebSocket ticket standing for this key for `TICKET_SECONDS` (with auth
        off, for nobody: /ws needs none then, but clients need no branch)."""
        key_id = principal.key_id if principal is not None else None
        bootstrap = principal.bucket if principal is not None and key_id is None else None
        return await self._keys.ws_ticket_insert(key_id, bootstrap, TICKET_SECONDS)

    async def redeem_ticket(self, ticket: str) -> Principal:
        if not ticket.startswith("tqt_") or len(ticket) > MAX_AUTHORIZATION_HEADER:
            raise Unauthenticated("malformed ticket")
        record = await self._keys.ws_ticket_redeem(ticket)
        principal = (
            self._bootstrap_named(record) if isinstance(record, str) else
            self._principal(record) if record is not None else None
        )  # fmt: skip
        if principal is None:
            raise Unauthenticated("unknown, used or expired ticket")
        return principal

    async def still_valid(self, principal: Principal) -> bool:
        """Whether a long-lived stream's key is still good (revocation is seen within the
        cache interval, as for requests). The bootstrap key is valid while configured."""
        if principal.key_id is None:
            return self._bootstrap_named(principal.bucket) is not None
        found, cached = self._revalidated.get(principal.key_id)
        if found:
            return bool(cached)
        valid = await self._keys.key_get_by_id(principal.key_id) is not None
        self._revalidated.put(principal.key_id, valid)
        return valid

    def _principal(self, record: KeyRecord) -> Principal:
        return Principal(
            bucket=str(record.key_id),
            key_id=record.key_id,
            name=record.name,
            permissions=record.permissions,
            rate_limit=record.rate_limit or self.config.rate_limit,
            burst=record.burst or self.config.burst,
            max_pending=record.max_pending,
        )

    async def authorize(
        self, credentials: Credentials, permission: Permission, rate_limited: bool = True
    ) -> Authorized:
        """The one door for REST, WebSocket and gRPC: who it is (401), whether it may (403),
        and a token of its rate limit (429), in that order."""
        principal = credentials.principal
        if principal is None and credentials.ticket:
            principal = await self.redeem_ticket(credentials.ticket)
        if principal is None:
            principal = await self.authenticate(credentials.header)
        if not principal.may(permission):
            raise Forbidden(f"this API key lacks the {permission.value} permission")
        decision = await self.admit(principal) if rate_limited else None
        return Authorized(principal, decision)

    async def admit(self, principal: Principal, cost: int = 1) -> Decision:
        """Spend `cost` tokens of the key's rate limit (a batch costs one per task)."""
        if cost > 1:
            decision = await self._limiter.admit_many(
                principal.bucket, principal.rate_limit, principal.burst, cost
            )
        else:
            decision = await self._limiter.admit(
                principal.bucket, principal.rate_limit, principal.burst
            )
        if not decision.admitted:
            raise RateLimited(decision)
        return decision

    async def flush_last_used(self) -> int:
        """Record which keys were used since the last flush, in one statement (a service)."""
        used, self._used = self._used, set()
        if used:
            try:
                await self._keys.key_touch_many(list(used))
            except StoreUnavailable:
                self._used |= used
                raise
        return len(used)


class StreamKey:
    """The key of a long-lived stream (WebSocket, gRPC), re-checked at most once per key-cache
    interval, so that revoking it ends the stream about as soon as it refuses requests."""

    def __init__(self, auth: Authenticator, principal: Principal | None) -> None:
        self._auth = auth
        self._principal = principal
        self.interval = auth.config.cache_seconds
        self._next_check = time.monotonic() + self.interval

    async def still_valid(self) -> bool:
        if self._principal is None or time.monotonic() < self._next_check:
            return True
        self._next_check = time.monotonic() + self.interval
        return await self._auth.still_valid(self._principal)


class TooManyStreams(BrokerError):
    """The key has as many open streams on this replica as it may (429 / RESOURCE_EXHAUSTED)."""


class OpenStreams:
    """Open WebSocket and gRPC streams per key, on this replica, capped."""

    def __init__(self, per_key_max: int) -> None:
        self.per_key_max = per_key_max
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def opened(self, principal: Principal | None) -> Iterator[None]:
        bucket = principal.bucket if principal is not None else "anonymous"
        if self._open.get(bucket, 0) >= self.per_key_max:
            raise TooManyStreams(
                f"this API key has {self.per_key_max} open streams on this replica already"
            )
        self._open[bucket] = self._open.get(bucket, 0) + 1
        try:
            yield
        finally:
            self._open[bucket] -= 1
            if not self._open[bucket]:
                del self._open[bucket]
