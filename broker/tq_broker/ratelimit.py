"""Per-key rate limits that hold for the whole cluster, not per replica.

Each key has one token bucket in PostgreSQL (rate r per second, capacity `burst`). A replica
never admits a request without a token from that bucket: it takes them in small grants (a
tenth of a second's worth), spends them locally, and drops what it has not spent within
`allowance_seconds`. Hence the bound we guarantee: for one key, the requests admitted by all
replicas together in any window of t seconds are at most burst + r·t. Unspent grants only
ever make a key get fewer, never more.

The one thing not to break: the bucket arithmetic in `TokenBucket` is the only place tokens are
computed, and it uses the database's clock for the shared bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from tq_broker.connector import Connector

RATE_DEFAULT = 100.0
BURST_DEFAULT = 200
ALLOWANCE_SECONDS_DEFAULT = 1.0
GRANT_MAX_DEFAULT = 10
HEARTBEAT_BURST_DEFAULT = 10  # beats per lease TTL, per worker
HEARTBEAT_WORKERS_MAX = 100_000  # workers whose budget a replica remembers


@dataclass
class TokenBucket:
    """The classic token bucket; `now` comes from whichever clock the caller trusts."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, n: float, now: float) -> bool:
        self.refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def seconds_until(self, n: float) -> float:
        """How long until n tokens are there, at the current refill rate."""
        return max(0.0, (n - self.tokens) / self.rate)


@dataclass(frozen=True)
class Decision:
    admitted: bool
    limit: float
    remaining: int
    retry_after_seconds: int  # whole seconds, >= 1 when refused


def retry_after(seconds: float) -> int:
    """Retry-After is a whole number of seconds, and at least 1."""
    return max(1, math.ceil(seconds))


def grant_size(rate: float, burst: int, grant_max: int = GRANT_MAX_DEFAULT) -> int:
    """Tokens a replica takes at once: about a tenth of a second's worth, at least one."""
    return max(1, min(grant_max, int(rate / 10), burst // 10))


@dataclass
class _Allowance:
    tokens: int
    expires: float
    central_remaining: int
    lock: asyncio.Lock
    refused_until: float = 0.0  # the shared bucket was empty: refuse from memory till then


class ClusterRateLimiter:
    def __init__(
        self,
        connector: Connector,
        allowance_seconds: float = ALLOWANCE_SECONDS_DEFAULT,
        grant_max: int = GRANT_MAX_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = connector
        self._allowance_seconds = allowance_seconds
        self._grant_max = grant_max
        self._clock = clock
        self._allowances: dict[str, _Allowance] = {}

    async def admit_many(self, bucket: str, rate: float, burst: int, cost: int) -> Decision:
        """Admit a request that costs `cost` tokens (a batch: one per task), straight from the
        shared bucket. It needs min(cost, burst) tokens there and takes all `cost`, so a batch
        larger than the burst leaves the bucket in debt that later requests wait out; under
        the bucket's lock, at most one such overdraft happens at a time. The bound becomes
        burst + rate·t + (largest batch - burst) tasks in any window of t seconds."""
        need = min(cost, burst)
        async with self._shared_bucket(bucket, rate, burst) as shared:
            if shared.tokens < need:
                return Decision(False, rate, 0, retry_after(shared.seconds_until(need)))
            shared.tokens -= cost
        return Decision(True, rate, max(0, math.floor(shared.tokens)), 0)

    async def admit(self, bucket: str, rate: float, burst: int) -> Decision:
        allowance = self._allowances.get(bucket)
        if allowance is None:
            allowance = self._allowances[bucket] = _Allowance(0, 0.0, burst, asyncio.Lock())
        if self._spend(allowance):
            return Decision(True, rate, allowance.tokens + allowance.central_remaining, 0)
        if (refused := self._still_refused(allowance, rate)) is not None:
            return refused
        async with allowance.lock:
            if self._spend(allowance):  # another request refilled it while we waited
                return Decision(True, rate, allowance.tokens + allowance.central_remaining, 0)
            if (refused := self._still_refused(allowance, rate)) is not None:
                return refused
            granted, remaining, wait = await self._take_from_cluster(bucket, rate, burst)
            allowance.central_remaining = remaining
            if granted == 0:
                # No token before `wait` even if nobody else takes one: refusing until then
                # costs the database nothing, and can only admit fewer, never more.
                allowance.refused_until = self._clock() + wait
                return Decision(False, rate, 0, retry_after(wait))
            allowance.tokens = granted - 1
            allowance.expires = self._clock() + self._allowance_seconds
            return Decision(True, rate, allowance.tokens + remaining, 0)

    def _still_refused(self, allowance: _Allowance, rate: float) -> Decision | None:
        left = allowance.refused_until - self._clock()
        if left > 0:
            return Decision(False, rate, 0, retry_after(left))
        return None

    def _spend(self, allowance: _Allowance) -> bool:
        if allowance.tokens > 0 and self._clock() < allowance.expires:
            allowance.tokens -= 1
            return True
        return False

    @contextlib.asynccontextmanager
    async def _shared_bucket(
        self, bucket: str, rate: float, burst: int
    ) -> AsyncIterator[TokenBucket]:
        """The key's bucket in PostgreSQL, locked and refilled as of the database's clock; what
        the caller leaves in it is stored (unless the caller raises or returns early, which
        changes nothing: the row stays as it was)."""
        async with self._db.transaction() as tx:
            await tx.execute("rate_bucket_lock", {"bucket": bucket, "burst": float(burst)})
            row = await tx.fetch_one("rate_bucket_read", {"bucket": bucket})
            assert row is not None
            # Time only moves forward for a bucket, so no interval is ever refilled twice.
            as_of = max(row["as_of"], row["updated_at"])
            shared = TokenBucket(rate, burst, row["tokens"], 0.0)
            shared.refill((as_of - row["updated_at"]).total_seconds())
            before = shared.tokens
            yield shared
            if shared.tokens != before:
                await tx.execute(
                    "rate_bucket_store",
                    {"bucket": bucket, "tokens": shared.tokens, "as_of": as_of},
                )

    async def _take_from_cluster(
        self, bucket: str, rate: float, burst: int
    ) -> tuple[int, int, float]:
        """(tokens granted, tokens left in the shared bucket, seconds until one is there)."""
        want = grant_size(rate, burst, self._grant_max)
        async with self._shared_bucket(bucket, rate, burst) as shared:
            granted = max(0, min(want, math.floor(shared.tokens)))  # none while in debt
            shared.tokens -= granted
        return granted, math.floor(shared.tokens), shared.seconds_until(1)


class LocalBuckets:
    """Token buckets of this replica alone, in memory, one per key (a worker, a client
    address), `rate` per second up to `burst`. Bounded: past `keys_max` keys, full buckets
    (the same as none) are forgotten first, everything if none is full."""

    def __init__(
        self,
        rate: float,
        burst: int,
        keys_max: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._keys_max = keys_max
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> Decision:
        """Spend a token of this key's bucket, if it has one."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._keys_max:
                self._forget_full(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
        if bucket.take(1, now):
            return Decision(True, self.rate, math.floor(bucket.tokens), 0)
        return self._refused(bucket)

    def refusal(self, key: str) -> Decision | None:
        """The refusal this key would get now, spending nothing; None while it has a token."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        bucket.refill(self._clock())
        return self._refused(bucket) if bucket.tokens < 1 else None

    def _refused(self, bucket: TokenBucket) -> Decision:
        return Decision(False, self.rate, 0, retry_after(bucket.seconds_until(1)))

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.burst:
                del self._buckets[key]
        if len(self._buckets) >= self._keys_max:
            self._buckets.clear()


class HeartbeatBudget(LocalBuckets):
    """Heartbeats are never held back by a key's rate limit (a busy worker must not lose its
    leases), but each worker gets a budget: `burst` beats, refilled at `burst` per lease TTL.
    A worker beating as configured uses a fraction of it. Kept per replica, in memory: across
    R replicas a worker gets at most R budgets.
    """

    def __init__(
        self,
        lease_ttl_seconds: float,
        heartbeat_interval_seconds: float,
        burst: int = HEARTBEAT_BURST_DEFAULT,
        workers_max: int = HEARTBEAT_WORKERS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Never below three times the rate we ask workers to beat at.
        rate = max(burst / lease_ttl_seconds, 3.0 / heartbeat_interval_seconds)
        super().__init__(rate, burst, workers_max, clock)

    def admit(self, worker_id: str) -> Decision:
        return self.take(worker_id)
