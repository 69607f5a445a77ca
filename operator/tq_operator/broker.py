"""What the operator asks the broker: queue depth per task types, and the worker list.

The requests, their success statuses and the reading of answers and `{"error": ...}` bodies
are the shared client layer's (`tq_client.calls`); this module adds the URL allow-list and
sorts failures for the operator's timers.

One long-lived httpx.AsyncClient serves every pool (pools may name different brokers, so
URLs are absolute). Failures come out as two exceptions: BrokerUnreachable (network, timeout,
5xx, 429: try again later) and BrokerRejected (any other 4xx: the pool's URL or key is wrong).
The one thing not to break: every request has a timeout shorter than a poll interval, so a
broker that hangs cannot stall the operator's timer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import httpx

from tq_client.calls import WORKERS, Call, queue_depth_call
from tq_client.errors import TaskQueueError
from tq_client.models import QueueDepth, WorkerInfo

REQUEST_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 2.0
_T = TypeVar("_T")


class BrokerError(Exception):
    """The broker did not answer usefully."""


class BrokerUnreachable(BrokerError):
    """Network error, timeout, 5xx or 429: probably transient."""


class BrokerRejected(BrokerError):
    """A 4xx other than 429 (bad key, bad task type): retrying the same request will not help."""


class BrokerUrlRefused(BrokerError):
    """The pool names a broker URL the operator may not send keys to (its allow-list)."""


def url_allowed(url: str, allowed: Sequence[str]) -> bool:
    """Exact match, or a prefix ending in `*`; an empty allow-list allows any URL."""
    url = url.rstrip("/")
    return not allowed or any(
        url.startswith(a[:-1]) if a.endswith("*") else url == a.rstrip("/") for a in allowed
    )


class BrokerClient:
    def __init__(
        self,
        http: httpx.AsyncClient | None = None,
        allowed_urls: Sequence[str] = (),
        own_key: str | None = None,
    ) -> None:
        self.allowed_urls = tuple(allowed_urls)
        # The operator's own read_tasks key (the chart's): then no pool Secret is ever read.
        self.own_key = own_key
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(REQUEST_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            headers={"User-Agent": "tq-operator"},
        )

    def check_url(self, base_url: str) -> None:
        """Raise BrokerUrlRefused unless the allow-list lets us send a key to this URL."""
        if not url_allowed(base_url, self.allowed_urls):
            raise BrokerUrlRefused(
                f"broker URL {base_url} is not in the operator's allow-list "
                f"({', '.join(self.allowed_urls)}); the operator sends API keys only there"
            )

    async def close(self) -> None:
        await self._http.aclose()

    async def queue_depth(
        self, base_url: str, task_types: Sequence[str], api_key: str | None = None
    ) -> QueueDepth:
        return await self._call(base_url, queue_depth_call(task_types), api_key)

    async def workers(self, base_url: str, api_key: str | None = None) -> list[WorkerInfo]:
        return await self._call(base_url, WORKERS, api_key)

    async def _call(self, base_url: str, call: Call[_T], api_key: str | None) -> _T:
        """The shared client layer's call (request, success statuses, error body), sorted into
        this module's two failures."""
        self.check_url(base_url)
        where = f"{call.method} {base_url.rstrip('/')}{call.path}"
        try:
            response = await self._http.send(call.request(self._http, base_url, api_key))
        except httpx.HTTPError as exc:
            raise BrokerUnreachable(f"{where}: {type(exc).__name__}: {exc}") from exc
        try:
            return call.result(response)
        except TaskQueueError as exc:
            if response.status_code >= 500 or response.status_code == 429:
                raise BrokerUnreachable(f"{where}: HTTP {response.status_code}") from exc
            raise BrokerRejected(f"{where}: HTTP {response.status_code}: {exc.message}") from exc


def pending(depth: QueueDepth) -> int:
    """The number the autoscaler targets: tasks ready to run plus tasks running.

    In-progress tasks count because they occupy workers: counting only ready tasks would
    scale a busy pool down as soon as its workers had claimed everything. Scheduled tasks
    (future schedule_at, retry backoff) do not: they cannot run yet.
    """
    return depth.ready + depth.in_progress
