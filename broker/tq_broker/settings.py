"""Broker settings, from the environment (`TQ_*`) and the command line.

Every field has a named unit and a documented default. Nothing reads the environment at import
time: `BrokerSettings()` is built by the CLI (or a test) and handed to `create_app`.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tq_broker.http_protocol import BODY_TIMEOUT_SECONDS_DEFAULT, HEADER_TIMEOUT_SECONDS_DEFAULT
from tq_broker.metrics import TASK_TYPES_MAX_DEFAULT
from tq_broker.ratelimit import BURST_DEFAULT, HEARTBEAT_BURST_DEFAULT, RATE_DEFAULT
from tq_broker.retry_policy import BACKOFF_BASE_SECONDS_DEFAULT, BACKOFF_CAP_SECONDS_DEFAULT
from tq_broker.task_store import PAYLOAD_LIMIT_BYTES_DEFAULT
from tq_broker.task_waits import MAX_WAITERS_DEFAULT
from tq_client.protocol import ABORT_GRACE_SECONDS_DEFAULT

BOOTSTRAP_KEY_MIN_LENGTH = 32  # guessing it must be hopeless


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL keeps its data when --data-dir is not given."""
    if os.geteuid() == 0:
        # PostgreSQL runs as an unprivileged user and must be able to reach the directory.
        return Path("/var/lib/taskqueue")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taskqueue"


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TQ_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP API.")
    metrics_port: int = Field(
        9091, ge=0, le=65535, description="Port of the Prometheus endpoint; 0 turns it off."
    )
    grpc_port: int = Field(
        9090, ge=0, le=65535, description="Port of the gRPC API (on host); 0 turns it off."
    )
    database_url: str | None = Field(
        None, description="PostgreSQL URL; without one the broker starts an embedded server."
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="Data directory of the embedded server."
    )
    migrate_on_start: bool = Field(True, description="Apply pending migrations at startup.")

    max_payload_bytes: int = Field(
        PAYLOAD_LIMIT_BYTES_DEFAULT, ge=0, description="Largest decoded payload accepted (413)."
    )
    max_batch_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest body of POST /api/v1/tasks/batch."
    )

    pool_min_connections: int = Field(2, ge=1, description="Connections kept open.")
    pool_max_connections: int = Field(10, ge=1, description="Most connections per replica.")
    pool_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest wait for a pooled connection before a 503."
    )
    statement_timeout_ms: int = Field(10_000, ge=100, description="Longest SQL statement.")
    health_timeout_seconds: float = Field(
        2.0, gt=0, description="Longest /health waits for PostgreSQL before answering degraded."
    )
    access_log: bool = Field(False, description="Log every HTTP request.")
    header_timeout_seconds: float = Field(
        HEADER_TIMEOUT_SECONDS_DEFAULT,
        gt=0,
        description="A connection's request headers must arrive within this; else it closes.",
    )
    body_timeout_seconds: float = Field(
        BODY_TIMEOUT_SECONDS_DEFAULT,
        gt=0,
        description="A request's body must arrive within this after its headers.",
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate (chain): serve REST, WebSocket and gRPC over TLS."
    )
    tls_key_file: str | None = Field(None, description="PEM private key of tls_cert_file.")
    max_connections: int = Field(
        2000, ge=10, description="Open connections and requests per replica; past it: 503."
    )
    metrics_on_api_port: bool = Field(
        True, description="Also serve /metrics on the API port (the metrics port always has it)."
    )
    metrics_task_types_max: int = Field(
        TASK_TYPES_MAX_DEFAULT, ge=1, description="task_type label values; the rest: other."
    )
    metrics_refresh_seconds: float = Field(
        5.0, gt=0, description="How often the leader refreshes the queue-state gauges."
    )

    # Workers and leases
    heartbeat_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="Workers beat this often; an abort reaches a running task's worker within it.",
    )
    lease_ttl_seconds: float = Field(
        30.0, gt=0, description="A claim's lease lasts this long unless a heartbeat renews it."
    )
    heartbeat_budget_per_ttl: int = Field(
        HEARTBEAT_BURST_DEFAULT,
        ge=1,
        description="Heartbeats a worker may send per lease TTL, per replica (past it: 429).",
    )
    claim_wait_max_seconds: float = Field(20.0, ge=0, description="Longest claim long-poll.")
    max_task_waiters: int = Field(
        MAX_WAITERS_DEFAULT,
        ge=1,
        description="GET /api/v1/tasks/{id}?wait= requests waiting at once, per replica; past "
        "it: 503 with Retry-After. Each holds a connection (max_connections) but no database "
        "connection.",
    )
    claim_poll_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="How often a replica checks, for all its waiting claims at once, which of "
        "their task types became ready by time (a retry's backoff, a future run_at).",
    )
    backoff_base_seconds: float = Field(
        BACKOFF_BASE_SECONDS_DEFAULT, ge=0, description="First retry's backoff."
    )
    backoff_cap_seconds: float = Field(
        BACKOFF_CAP_SECONDS_DEFAULT, ge=0, description="Longest retry backoff."
    )
    deadline_grace_seconds: float = Field(
        30.0, ge=0, description="Added to timeout_seconds before the hard deadline rescues."
    )
    abort_grace_seconds: float = Field(
        ABORT_GRACE_SECONDS_DEFAULT,
        ge=0,
        description="An aborted handler gets this long to stop before its worker abandons it "
        "(the task ends cancelled either way).",
    )
    worker_silent_seconds: float = Field(
        30.0, gt=0, description="A worker without heartbeats this long is marked offline."
    )
    retention_seconds: float = Field(
        7 * 24 * 3600.0, ge=0, description="Finished tasks are deleted after this long."
    )
    rescue_interval_seconds: float = Field(1.0, gt=0, description="How often leases are checked.")
    cleanup_interval_seconds: float = Field(60.0, gt=0, description="How often retention runs.")
    schedule_check_interval_seconds: float = Field(
        1.0, gt=0, description="How often the leader looks for due periodic schedules."
    )
    leader_lease_seconds: float = Field(
        5.0, gt=0, description="A silent leader loses leadership after about this long."
    )
    leader_election: Literal["auto", "lease", "advisory"] = Field(
        "auto",
        description="auto: a Kubernetes Lease inside a cluster, a PostgreSQL advisory lock "
        "outside one.",
    )
    lease_name: str = Field("taskqueue-broker-leader", description="Name of the Lease.")
    lease_namespace: str | None = Field(
        None, description="Namespace of the Lease; default: the pod's own namespace."
    )
    kubeconfig: str | None = Field(
        None, description="Kubeconfig for the Lease outside a cluster (default $KUBECONFIG)."
    )
    demo_worker: bool = Field(False, description="Also run a worker with the demo handlers.")

    # API keys and rate limits
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description="API-key auth. auto: off only for the embedded database on a loopback "
        "address without TQ_ADMIN_API_KEY, on otherwise. off is refused off loopback.",
    )
    admin_api_key: SecretStr | None = Field(
        None,
        description="A bootstrap key with the admin permission (TQ_ADMIN_API_KEY); at least "
        f"{BOOTSTRAP_KEY_MIN_LENGTH} characters (e.g. `openssl rand -hex 24`).",
    )
    rate_limit_per_second: float = Field(
        RATE_DEFAULT, gt=0, description="Requests per second per key, across all replicas."
    )
    rate_limit_burst: int = Field(BURST_DEFAULT, ge=1, description="Bucket size per key.")
    auth_failures_per_second: float = Field(
        1.0, gt=0, description="Requests with a wrong key allowed per client address, sustained."
    )
    auth_failures_burst: int = Field(
        30, ge=1, description="Requests with a wrong key per client address before 429."
    )
    streams_per_key_max: int = Field(
        100, ge=1, description="Open WebSocket and gRPC streams per API key, per replica."
    )
    key_cache_seconds: float = Field(
        5.0, ge=0, description="How long a replica trusts a looked-up key (revocation delay)."
    )
    embedded_database: bool = Field(
        False, description="Set by the CLI when it started the embedded PostgreSQL."
    )

    worker_api_key: SecretStr | None = Field(
        None, description="A bootstrap key with only process_tasks, for worker pods."
    )
    operator_api_key: SecretStr | None = Field(
        None, description="A bootstrap key with only read_tasks, for the operator."
    )

    @field_validator("admin_api_key", "worker_api_key", "operator_api_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < BOOTSTRAP_KEY_MIN_LENGTH:
            raise ValueError(
                f"bootstrap API keys must be at least {BOOTSTRAP_KEY_MIN_LENGTH} characters "
                "(try: openssl rand -hex 24)"
            )
        return key

    @model_validator(mode="after")
    def _tls_pair(self) -> BrokerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both TQ_TLS_CERT_FILE and TQ_TLS_KEY_FILE")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    def tls_files(self) -> tuple[str, str] | None:
        """(certificate, key) when TLS is on."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return self.tls_cert_file, self.tls_key_file

    def bootstrap_keys(self) -> dict[str, str]:
        """The worker and operator keys given in the environment, by name."""
        return {
            name: key.get_secret_value()
            for name, key in (("worker", self.worker_api_key), ("operator", self.operator_api_key))
            if key is not None
        }

    def auth_enabled(self) -> bool:
        """Whether requests need an API key; raises if auth is off on a non-loopback address."""
        loopback = is_loopback(self.host)
        if self.auth == "on":
            return True
        if self.auth == "off":
            if not loopback:
                raise ValueError(f"TQ_AUTH=off is refused on a non-loopback address ({self.host})")
            return False
        no_keys = self.admin_api_key is None and not self.bootstrap_keys()
        return not (self.embedded_database and loopback and no_keys)

    @property
    def max_body_bytes(self) -> int:
        """Body cap of single-task requests: the base64 of the largest payload, plus room."""
        return (self.max_payload_bytes + 2) // 3 * 4 + 64 * 1024
