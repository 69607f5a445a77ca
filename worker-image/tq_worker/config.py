"""Runtime configuration and the worker's identity.

The one thing not to break: a worker id is unique per process (`worker-<host>-<pid>-<random6>`),
so a restarted pod with the same hostname never inherits or orphans its predecessor's leases.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import string
from dataclasses import dataclass, field

BROKER_URL_DEFAULT = "http://127.0.0.1:8080"
CONCURRENCY_DEFAULT = 4
DRAIN_SECONDS_DEFAULT = 30.0
# Longest long-poll the worker asks for; the broker caps it with claim_wait_max_seconds.
CLAIM_WAIT_SECONDS_DEFAULT = 20.0
# After the drain period: how long to keep trying to report what finished, then give up.
FLUSH_SECONDS_DEFAULT = 10.0
HELD_MAX = 10_000  # the broker takes at most this many leases per heartbeat

WORKER_ID_MAX = 200
_RANDOM_ALPHABET = string.ascii_lowercase + string.digits
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def sanitize(text: str) -> str:
    """Characters a worker id may not contain become '-'."""
    return _UNSAFE.sub("-", text)


def new_worker_id(hostname: str | None = None, pid: int | None = None) -> str:
    host = sanitize(hostname if hostname is not None else socket.gethostname()) or "unknown"
    suffix = "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(6))
    tail = f"-{pid if pid is not None else os.getpid()}-{suffix}"
    room = WORKER_ID_MAX - len("worker-") - len(tail)
    return f"worker-{host[:room]}{tail}"


@dataclass(frozen=True)
class RuntimeConfig:
    broker_url: str = BROKER_URL_DEFAULT
    api_key: str | None = None
    concurrency: int = CONCURRENCY_DEFAULT
    # Claimed tasks waiting for a free executor; None: as many as `concurrency`.
    prefetch: int | None = None
    drain_seconds: float = DRAIN_SECONDS_DEFAULT
    claim_wait_seconds: float = CLAIM_WAIT_SECONDS_DEFAULT
    flush_seconds: float = FLUSH_SECONDS_DEFAULT
    worker_id: str = field(default_factory=new_worker_id)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= HELD_MAX:
            raise ValueError(f"concurrency must be between 1 and {HELD_MAX}")
        if self.prefetch is not None and self.prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        if self.capacity > HELD_MAX:
            raise ValueError(f"concurrency + prefetch must be at most {HELD_MAX}")
        if self.drain_seconds < 0:
            raise ValueError("drain seconds must be >= 0")

    @property
    def prefetch_count(self) -> int:
        return self.concurrency if self.prefetch is None else self.prefetch

    @property
    def capacity(self) -> int:
        """Most tasks held unfinished at once: running plus claimed and waiting."""
        return self.concurrency + self.prefetch_count
