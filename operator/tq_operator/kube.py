"""The operator's calls to the Kubernetes API (official client, asyncio flavour).

Only this module touches `kubernetes`; errors leave it as kopf's retry protocol:
kopf.TemporaryError for what may pass (conflicts, throttling, 5xx, network, RBAC not yet
granted), kopf.PermanentError for a request the API server refuses as invalid.
The one thing not to break: the Deployment is written by server-side apply with one field
manager and `force`, so the operator owns every field it renders (including replicas) and a
field it stops rendering is removed, never left behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import kopf
from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.config.config_exception import ConfigException

from tq_operator.rendering import FIELD_MANAGER

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_CONTENT_TYPE = "application/merge-patch+json"
REQUEST_TIMEOUT_SECONDS = 10.0
RETRY_DELAY_SECONDS = 5.0
CONFLICT_RETRY_DELAY_SECONDS = 1.0
FORBIDDEN_RETRY_DELAY_SECONDS = 30.0


# Only Secrets with this label set to "true" are read: a WorkerPool cannot make the operator
# read (and send to its broker URL) any other Secret of its namespace.
API_KEY_LABEL = "taskqueue.io/api-key"


class SecretUnavailable(Exception):
    """The pool's API-key Secret or its key does not exist."""


@asynccontextmanager
async def api_errors(what: str) -> AsyncIterator[None]:
    """Translate the client's exceptions into kopf's retry protocol."""
    try:
        yield
    except ApiException as exc:
        detail = _api_message(exc)
        status = exc.status or 0
        if status in (400, 422):
            raise kopf.PermanentError(f"{what}: refused ({status}): {detail}") from exc
        if status == 409:
            raise kopf.TemporaryError(
                f"{what}: conflict: {detail}", delay=CONFLICT_RETRY_DELAY_SECONDS
            ) from exc
        if status in (401, 403):
            raise kopf.TemporaryError(
                f"{what}: not allowed ({status}): {detail}", delay=FORBIDDEN_RETRY_DELAY_SECONDS
            ) from exc
        raise kopf.TemporaryError(
            f"{what}: HTTP {status}: {detail}", delay=RETRY_DELAY_SECONDS
        ) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise kopf.TemporaryError(
            f"{what}: {type(exc).__name__}: {exc}", delay=RETRY_DELAY_SECONDS
        ) from exc


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "")
    except ValueError:
        return str(exc.reason or exc.body or "")[:500]
    if isinstance(body, dict):
        return str(body.get("message") or exc.reason)[:500]
    return str(exc.reason)[:500]


class Kube:
    """One ApiClient for the operator's life; close() at cleanup."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    @classmethod
    async def connect(cls) -> Kube:
        """In a pod: its service account. Elsewhere: $KUBECONFIG or ~/.kube/config."""
        configuration = client.Configuration()
        try:
            # The aio config loaders carry no annotations.
            config.load_incluster_config(configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            await config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG") or None,
                client_configuration=configuration,
            )
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()  # type: ignore[no-untyped-call]  # untyped in the client

    async def read_deployment(self, namespace: str, name: str) -> client.V1Deployment | None:
        try:
            async with api_errors(f"read Deployment {namespace}/{name}"):
                return await self.apps.read_namespaced_deployment(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
        except kopf.TemporaryError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return None
            raise

    async def apply_deployment(self, manifest: Mapping[str, Any]) -> client.V1Deployment:
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        async with api_errors(f"apply Deployment {namespace}/{name}"):
            return await self.apps.patch_namespaced_deployment(
                name,
                namespace,
                dict(manifest),
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY_CONTENT_TYPE,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        async with api_errors(f"scale Deployment {namespace}/{name}"):
            await self.apps.patch_namespaced_deployment(
                name,
                namespace,
                {"spec": {"replicas": replicas}},
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_CONTENT_TYPE,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )

    async def list_pods(self, namespace: str, selector: str) -> list[client.V1Pod]:
        async with api_errors(f"list pods {namespace} {selector}"):
            pods = await self.core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        return list(pods.items or [])

    async def annotate_pods(
        self, namespace: str, annotations: Mapping[str, Mapping[str, str]]
    ) -> None:
        """Merge-patch annotations onto pods at once; a pod that is already gone is skipped."""

        async def one(pod: str, values: Mapping[str, str]) -> None:
            try:
                async with api_errors(f"annotate pod {namespace}/{pod}"):
                    await self.core.patch_namespaced_pod(
                        pod,
                        namespace,
                        {"metadata": {"annotations": dict(values)}},
                        field_manager=FIELD_MANAGER,
                        _content_type=MERGE_CONTENT_TYPE,
                        _request_timeout=REQUEST_TIMEOUT_SECONDS,
                    )
            except kopf.TemporaryError as exc:
                if not (isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404):
                    raise

        await asyncio.gather(*(one(pod, values) for pod, values in annotations.items()))

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            async with api_errors(f"read Secret {namespace}/{name}"):
                secret = await self.core.read_namespaced_secret(
                    name, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
                )
        except kopf.TemporaryError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                raise SecretUnavailable(f"Secret {namespace}/{name} does not exist") from exc
            raise
        labels = (secret.metadata.labels if secret.metadata else None) or {}
        if labels.get(API_KEY_LABEL) != "true":
            raise SecretUnavailable(
                f"Secret {namespace}/{name} lacks the label {API_KEY_LABEL}=true: the operator "
                "reads only Secrets that opt in to holding a taskqueue API key"
            )
        data = secret.data or {}
        if key not in data:
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode("utf-8").strip()
