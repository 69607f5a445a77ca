"""Leader election on a Kubernetes Lease (coordination.k8s.io/v1), for broker and operator.

It lives in `tq_kube`, which imports nothing of ours, because both the broker and the
operator use it. Needs the `kubernetes` package (imported lazily).

How it works, every `retry_seconds`:
- no Lease: create it holding it (AlreadyExists: someone else was faster);
- ours: renew (replace with the resourceVersion we read). Any failure — conflict, timeout,
  API error — steps down at once;
- someone else's: take it only if its record has not changed for `lease_seconds` on OUR
  monotonic clock (as client-go does: no trust in other machines' clocks), again by a
  resourceVersion-checked replace.
`is_leader` also turns false by itself once `lease_seconds` pass without a successful renewal,
so a process resumed after SIGSTOP does not act as leader before its next (failing) renewal.
A graceful stop releases the Lease (empty holder) so a successor need not wait.

The one thing not to break: a Lease gives no fencing. Two holders can overlap for a moment;
work done while leading must be safe to run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LEASE_SECONDS_DEFAULT = 15.0
REQUEST_TIMEOUT_SECONDS_DEFAULT = 5.0


def in_cluster() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT_DIR / "token").exists()
    )


def current_namespace(default: str = "default") -> str:
    if namespace := os.environ.get("POD_NAMESPACE"):
        return namespace
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or default
    except OSError:
        return default


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class KubernetesLeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_seconds: float = LEASE_SECONDS_DEFAULT
    retry_seconds: float = LEASE_SECONDS_DEFAULT / 3
    request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS_DEFAULT
    kubeconfig: str | None = None  # outside a cluster; None: in-cluster or $KUBECONFIG


class KubernetesLeaseElector:
    def __init__(self, config: KubernetesLeaseConfig) -> None:
        self.config = config
        self._api: Any = None
        self._leader = False
        self._renewed_at = float("-inf")
        self._observed: tuple[str | None, Any] | None = None  # (holder, renewTime) last seen
        self._observed_at = float("-inf")

    @property
    def is_leader(self) -> bool:
        fresh = time.monotonic() - self._renewed_at < self.config.lease_seconds
        return self._leader and fresh

    def _coordination_api(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            if self.config.kubeconfig is None and in_cluster():
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                api_client = client.ApiClient()
            else:
                api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=self.config.kubeconfig
                )
            self._api = client.CoordinationV1Api(api_client)
        return self._api

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.retry_seconds)
        finally:
            await self.resign()

    async def step(self) -> None:
        """One round: renew, take over an expired lease, or observe; never raises."""
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._step), self.config.request_timeout_seconds * 3
            )
        except Exception as exc:
            self._step_down(f"{type(exc).__name__}: {exc}")

    async def resign(self) -> None:
        """Give the lease up (if held) so a standby takes over at once."""
        if self._leader:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self._release), 5)
        self._leader = False

    def _step_down(self, reason: str) -> None:
        if self._leader:
            log.warning("leadership of lease %s lost: %s", self.config.name, reason)
        self._leader = False

    def _step(self) -> None:
        from kubernetes.client.exceptions import ApiException

        api = self._coordination_api()
        timeout = self.config.request_timeout_seconds
        try:
            lease = api.read_namespaced_lease(
                self.config.name, self.config.namespace, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._create(api)
            return
        spec = lease.spec
        holder = spec.holder_identity or None
        record = (holder, spec.renew_time)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        if holder == self.config.identity:
            self._write(api, lease, acquiring=False)
            return
        self._step_down(f"held by {holder}")
        expired = time.monotonic() - self._observed_at >= (
            spec.lease_duration_seconds or self.config.lease_seconds
        )
        if holder is None or expired:
            self._write(api, lease, acquiring=True)

    def _create(self, api: Any) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        now = datetime.now(UTC)
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.config.name),
            spec=client.V1LeaseSpec(
                holder_identity=self.config.identity,
                lease_duration_seconds=int(self.config.lease_seconds),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            api.create_namespaced_lease(
                self.config.namespace, body, _request_timeout=self.config.request_timeout_seconds
            )
        except ApiException as exc:
            if exc.status == 409:
                return  # another candidate created it first
            raise
        self._became_leader()

    def _write(self, api: Any, lease: Any, acquiring: bool) -> None:
        """Renew or take over, conditional on the resourceVersion we read (409 otherwise)."""
        from kubernetes.client.exceptions import ApiException

        now = datetime.now(UTC)
        spec = lease.spec
        spec.holder_identity = self.config.identity
        spec.lease_duration_seconds = int(self.config.lease_seconds)
        spec.renew_time = now
        if acquiring:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        try:
            api.replace_namespaced_lease(
                self.config.name,
                self.config.namespace,
                lease,
                _request_timeout=self.config.request_timeout_seconds,
            )
        except ApiException as exc:
            if exc.status == 409:
                self._step_down("the lease changed under us (409)")
                return
            raise
        self._became_leader()

    def _became_leader(self) -> None:
        if not self._leader:
            log.info(
                "leading lease %s/%s as %s",
                self.config.namespace,
                self.config.name,
                self.config.identity,
            )
        self._leader = True
        self._renewed_at = time.monotonic()

    def _release(self) -> None:
        api = self._coordination_api()
        lease = api.read_namespaced_lease(
            self.config.name,
            self.config.namespace,
            _request_timeout=self.config.request_timeout_seconds,
        )
        if lease.spec.holder_identity != self.config.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        lease.spec.renew_time = datetime.now(UTC)
        api.replace_namespaced_lease(
            self.config.name,
            self.config.namespace,
            lease,
            _request_timeout=self.config.request_timeout_seconds,
        )
        log.info("released lease %s/%s", self.config.namespace, self.config.name)
