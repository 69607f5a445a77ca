"""The worker's HTTP side of the protocol in `tq_client.protocol`, and its error translation.

Owns the two connection pools: heartbeats get their own, so a renewal never queues behind a
long-poll claim or a big result batch. Callers see three exceptions instead of HTTP:
`BrokerUnavailable` (network, timeouts, 5xx, 429: retry later), `WorkerGone` (the broker does
not know this worker or marked it offline: register again, what it held is lost) and
`BrokerRejected` (any other 4xx: retrying the same request cannot help). The broker's
`{"error": ...}` body and Retry-After are read by `tq_client.errors`, as by every client.
The one thing not to
break: a 409 on complete/fail/release means every lease of the batch was stale; it is an answer
(all rejected), not an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tq_client.errors import error_message
from tq_client.errors import retry_after as retry_after_seconds
from tq_client.protocol import (
    ClaimedTask,
    ClaimRequest,
    ClaimResponse,
    CompletedTask,
    CompleteRequest,
    FailedTask,
    FailRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    Lease,
    LeaseOutcome,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    ReleaseRequest,
    TaskTypeOptions,
)
from tq_worker.backoff import Backoff

REQUEST_TIMEOUT_SECONDS_DEFAULT = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
# A long-poll answers after at most wait_seconds; this much more before we call it lost.
CLAIM_TIMEOUT_MARGIN_SECONDS = 10.0
RETRY_AFTER_MAX_SECONDS = 60.0
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
M = TypeVar("M", bound=BaseModel)


class BrokerError(Exception):
    """Base of the errors the broker client raises."""


class BrokerUnavailable(BrokerError):
    """Network error, timeout, 5xx or 429: try again after a backoff (or its Retry-After)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkerGone(BrokerError):
    """404/409 on heartbeat or claim: the broker forgot this worker or marked it offline."""


class BrokerRejected(BrokerError):
    """Any other 4xx: the request itself is wrong (or unauthorised); repeating it cannot help."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}{KEY_HINTS.get(status_code, '')}")
        self.status_code = status_code
        self.reason = message


# A refused key is a setting to fix, not a bug: every log line about it says which one.
KEY_HINTS = {
    401: " (set --api-key / TQ_API_KEY to a valid key)",
    403: " (the API key needs the process_tasks permission)",
}


def retry_delay(exc: BrokerError, backoff: Backoff) -> float:
    """The next backoff delay, but never shorter than the broker's Retry-After."""
    delay = backoff.next_delay()
    if isinstance(exc, BrokerUnavailable) and exc.retry_after is not None:
        return max(delay, exc.retry_after)
    return delay


def retry_after(response: httpx.Response) -> float | None:
    """The broker's Retry-After (read by the shared client layer), bounded: a worker never
    sleeps longer than a minute on one answer's say-so."""
    seconds = retry_after_seconds(response)
    if seconds is None:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)


def parse(model: type[M], response: httpx.Response) -> M:
    """Tolerant reader: fields this worker does not know are ignored (a newer broker)."""
    try:
        data: Any = response.json()
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key in model.model_fields}
        return model.model_validate(data)
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise BrokerUnavailable(f"unreadable {model.__name__} from the broker: {exc}") from exc


class BrokerClient:
    def __init__(
        self,
        broker_url: str,
        worker_id: str,
        api_key: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS_DEFAULT,
    ) -> None:
        self.worker_id = worker_id
        headers = dict(JSON_HEADERS)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = httpx.Timeout(request_timeout, connect=CONNECT_TIMEOUT_SECONDS)
        self._http = httpx.AsyncClient(
            base_url=broker_url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._heartbeat_http = httpx.AsyncClient(
            base_url=broker_url,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._heartbeat_http.aclose()

    async def register(
        self,
        task_types: Sequence[str],
        concurrency: int,
        prefetch: int | None = None,
        task_options: Mapping[str, TaskTypeOptions] | None = None,
    ) -> RegisterWorkerResponse:
        body = RegisterWorkerRequest(
            worker_id=self.worker_id,
            task_types=list(task_types),
            concurrency=concurrency,
            prefetch=prefetch,
            task_options=dict(task_options or {}),
        )
        response = await self._send(self._http, "POST", "/api/v1/workers", body)
        _raise_for_status(response)
        return parse(RegisterWorkerResponse, response)

    async def heartbeat(self, body: HeartbeatRequest) -> HeartbeatResponse:
        path = f"/api/v1/workers/{self.worker_id}/heartbeat"
        response = await self._send(self._heartbeat_http, "POST", path, body)
        _raise_for_status(response, gone=(404, 409))
        return parse(HeartbeatResponse, response)

    async def claim(self, max_tasks: int, wait_seconds: float) -> list[ClaimedTask]:
        body = ClaimRequest(
            worker_id=self.worker_id, max_tasks=max_tasks, wait_seconds=wait_seconds
        )
        timeout = httpx.Timeout(
            wait_seconds + CLAIM_TIMEOUT_MARGIN_SECONDS, connect=CONNECT_TIMEOUT_SECONDS
        )
        response = await self._send(self._http, "POST", "/api/v1/tasks/claim", body, timeout)
        _raise_for_status(response, gone=(404, 409))
        return parse(ClaimResponse, response).tasks

    async def complete(self, tasks: Sequence[CompletedTask]) -> LeaseOutcome:
        body = CompleteRequest(worker_id=self.worker_id, tasks=list(tasks))
        return await self._lease_batch("/api/v1/tasks/complete", body, tasks)

    async def fail(self, tasks: Sequence[FailedTask]) -> LeaseOutcome:
        body = FailRequest(worker_id=self.worker_id, tasks=list(tasks))
        return await self._lease_batch("/api/v1/tasks/fail", body, tasks)

    async def release(self, leases: Sequence[Lease]) -> LeaseOutcome:
        body = ReleaseRequest(worker_id=self.worker_id, tasks=list(leases))
        return await self._lease_batch("/api/v1/tasks/release", body, leases)

    async def drain(self) -> None:
        """Claim nothing more: the broker ends our waiting claim (which then answers)."""
        response = await self._send(self._http, "POST", f"/api/v1/workers/{self.worker_id}/drain")
        _raise_for_status(response, gone=(404, 409))

    async def deregister(self) -> None:
        """DELETE the worker; a 404 (already forgotten) is as good as a 204."""
        response = await self._send(self._http, "DELETE", f"/api/v1/workers/{self.worker_id}")
        if response.status_code != 404:
            _raise_for_status(response)

    async def _lease_batch(
        self,
        path: str,
        body: BaseModel,
        items: Sequence[CompletedTask | FailedTask | Lease],
    ) -> LeaseOutcome:
        response = await self._send(self._http, "POST", path, body)
        if response.status_code == 409:
            return LeaseOutcome(accepted=[], rejected=[item.task_id for item in items])
        _raise_for_status(response)
        return parse(LeaseOutcome, response)

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        body: BaseModel | None = None,
        request_timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        content = body.model_dump_json().encode() if body is not None else None
        try:
            if request_timeout is None:
                return await client.request(method, path, content=content)
            return await client.request(method, path, content=content, timeout=request_timeout)
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
            raise BrokerUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc


def _raise_for_status(response: httpx.Response, gone: tuple[int, ...] = ()) -> None:
    status = response.status_code
    if status < 300:
        return
    message = error_message(response)
    if status in gone:
        raise WorkerGone(f"HTTP {status}: {message}")
    if status >= 500 or status == 429:
        raise BrokerUnavailable(f"HTTP {status}: {message}", retry_after(response))
    raise BrokerRejected(status, message)
