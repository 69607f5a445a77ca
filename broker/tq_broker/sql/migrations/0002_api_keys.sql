-- API keys (stored only as SHA-256 hashes) and the cluster-wide rate-limit buckets.

CREATE TABLE tq_api_keys (
    key_id       uuid        PRIMARY KEY,
    name         text        NOT NULL,
    prefix       text        NOT NULL,
    secret_hash  bytea       NOT NULL UNIQUE,
    permissions  text[]      NOT NULL,
    rate_limit   double precision CHECK (rate_limit > 0),
    burst        integer     CHECK (burst >= 1),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- One token bucket per key for the whole cluster; replicas take tokens from it in small grants.
CREATE TABLE tq_rate_buckets (
    bucket     text             PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL DEFAULT now()
);
