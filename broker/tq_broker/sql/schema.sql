-- The whole schema as the migrations build it. tests/integration/test_migrations.py proves the
-- two are identical; change both together.

CREATE TABLE tq_schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tq_tasks (
    task_id          uuid        PRIMARY KEY,
    task_type        text        NOT NULL,
    payload          bytea       NOT NULL,
    priority         smallint    NOT NULL CHECK (priority BETWEEN 0 AND 255),
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN
                     ('pending', 'in_progress', 'completed', 'failed', 'dead_letter', 'cancelled')),
    run_at           timestamptz NOT NULL DEFAULT now(),
    timeout_seconds  integer     NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 86400),
    max_retries      integer     NOT NULL CHECK (max_retries BETWEEN 0 AND 100),
    retry_count      integer     NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    result           bytea,
    error            text,
    worker_id        text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    claimed_at       timestamptz,
    finished_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text,
    request_digest   bytea,
    key_id           uuid,  -- only for a key with a pending cap
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    abort_requested_at  timestamptz,
    aborted_by          text,
    progress_fraction   double precision CHECK (progress_fraction BETWEEN 0 AND 1),
    progress_message    text,
    progress_updated_at timestamptz
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);

CREATE INDEX tq_tasks_ready_type_idx ON tq_tasks (task_type, priority DESC, run_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX tq_tasks_created_idx ON tq_tasks (created_at DESC);
CREATE INDEX tq_tasks_leased_idx ON tq_tasks (lease_expires_at) WHERE status = 'in_progress';
CREATE INDEX tq_tasks_finished_idx ON tq_tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE UNIQUE INDEX tq_tasks_idempotency_key_idx ON tq_tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tq_tasks_capped_key_idx ON tq_tasks (key_id)
    WHERE key_id IS NOT NULL AND status IN ('pending', 'failed');
CREATE INDEX tq_tasks_dead_letter_idx ON tq_tasks (task_type, created_at)
    WHERE status = 'dead_letter';

CREATE TABLE tq_workers (
    worker_id         text             PRIMARY KEY,
    task_types        text[]           NOT NULL,
    concurrency       integer          NOT NULL CHECK (concurrency >= 1),
    status            text             NOT NULL DEFAULT 'online'
                      CHECK (status IN ('online', 'draining', 'offline')),
    registered_at     timestamptz      NOT NULL DEFAULT now(),
    last_heartbeat    timestamptz      NOT NULL DEFAULT now(),
    current_tasks     integer          NOT NULL DEFAULT 0,
    cpu_usage_percent double precision NOT NULL DEFAULT 0,
    memory_usage_mb   double precision NOT NULL DEFAULT 0,
    prefetch          integer          NOT NULL DEFAULT 0 CHECK (prefetch >= 0),
    key_id            uuid
);

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
    revoked_at   timestamptz,
    max_pending  integer     CHECK (max_pending >= 1)
);

CREATE TABLE tq_rate_buckets (
    bucket     text             PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL DEFAULT now()
);

CREATE TABLE tq_event_listeners (
    replica_id text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TABLE tq_ws_tickets (
    ticket_hash bytea       PRIMARY KEY,
    key_id      uuid,
    bootstrap   text,  -- a key from the broker's environment (then key_id is NULL)
    expires_at  timestamptz NOT NULL
);

-- A failed attempt: with retries left (and the failure retryable), 'failed' until its backoff
-- ends; otherwise 'dead_letter'. Backoff = the worker's retry_delay_seconds when given, else
-- min(cap, base * 2^retry_count) with equal jitter (between half and all of it). Used by
-- task_fail_many and the rescuer's task_rescue_expired.
CREATE FUNCTION tq_failed_attempt(
    retries_done integer, max_retries integer, retryable boolean,
    backoff_base_seconds double precision, backoff_cap_seconds double precision,
    retry_delay_seconds double precision,
    OUT status text, OUT retry_count integer, OUT run_at timestamptz, OUT finished_at timestamptz
) LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN again THEN 'failed' ELSE 'dead_letter' END,
           CASE WHEN again THEN retries_done + 1 ELSE retries_done END,
           now() + coalesce(retry_delay_seconds,
                            least(backoff_cap_seconds, backoff_base_seconds * power(2, retries_done))
                            * (0.5 + random() / 2)) * interval '1 second',
           CASE WHEN again THEN NULL ELSE now() END
    FROM (SELECT retryable AND retries_done < max_retries AS again) AS decision
$$;

-- Priority buckets for stats and metrics: high >= 200, normal 100-199, low <= 99.
CREATE FUNCTION tq_priority_bucket(priority smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN priority >= 200 THEN 'high' WHEN priority >= 100 THEN 'normal' ELSE 'low' END
$$;

-- One row per claim: opened by the claim, closed by complete, fail, release or the rescuer.
-- Deleted with its task (the cleaner); a claim beyond the 50th deletes the oldest.
CREATE TABLE tq_task_attempts (
    task_id     uuid        NOT NULL REFERENCES tq_tasks (task_id) ON DELETE CASCADE,
    attempt     integer     NOT NULL CHECK (attempt >= 1),
    worker_id   text        NOT NULL,
    claimed_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text        CHECK (outcome IN
                ('completed', 'failed', 'expired', 'released', 'cancelled')),
    error       text,
    PRIMARY KEY (task_id, attempt)
);

-- What the latest worker registering a task type said its defaults are (NULL: the contract's).
CREATE TABLE tq_task_type_defaults (
    task_type       text        PRIMARY KEY,
    max_retries     integer     CHECK (max_retries BETWEEN 0 AND 100),
    timeout_seconds integer     CHECK (timeout_seconds BETWEEN 1 AND 86400),
    worker_id       text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- An attempt that ended without a result (failed, or rescued): an aborted task is cancelled,
-- never retried; any other follows tq_failed_attempt. Used by task_fail_many and the rescuer.
CREATE FUNCTION tq_ended_attempt(
    aborted boolean, current_run_at timestamptz,
    retries_done integer, max_retries integer, retryable boolean,
    backoff_base_seconds double precision, backoff_cap_seconds double precision,
    retry_delay_seconds double precision,
    OUT status text, OUT retry_count integer, OUT run_at timestamptz, OUT finished_at timestamptz
) LANGUAGE sql VOLATILE AS $$
    SELECT 'cancelled', retries_done, current_run_at, now() WHERE aborted
    UNION ALL
    SELECT a.status, a.retry_count, a.run_at, a.finished_at
    FROM tq_failed_attempt(retries_done, max_retries, retryable, backoff_base_seconds,
                           backoff_cap_seconds, retry_delay_seconds) AS a
    WHERE NOT aborted
$$;

-- Periodic schedules (maintenance/scheduler.py); a fire is unique per (schedule, fire time).
CREATE TABLE tq_schedules (
    name             text        PRIMARY KEY,
    cron             text,
    interval_seconds integer     CHECK (interval_seconds >= 1),
    timezone         text        NOT NULL DEFAULT 'UTC',
    task_type        text        NOT NULL,
    payload          bytea       NOT NULL,
    priority         smallint    NOT NULL CHECK (priority BETWEEN 0 AND 255),
    timeout_seconds  integer     CHECK (timeout_seconds BETWEEN 1 AND 86400),  -- NULL: the type's
    max_retries      integer     CHECK (max_retries BETWEEN 0 AND 100),        -- default at fire time
    paused           boolean     NOT NULL DEFAULT false,
    missed_fires     text        NOT NULL DEFAULT 'fire_once' CHECK (missed_fires IN ('fire_once', 'skip')),
    anchor_at        timestamptz NOT NULL,  -- interval schedules fire at anchor_at + k * interval
    next_fire_at     timestamptz NOT NULL,
    last_fire_at     timestamptz,
    last_task_id     uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);

CREATE INDEX tq_schedules_due_idx ON tq_schedules (next_fire_at) WHERE NOT paused;

CREATE TABLE tq_schedule_fires (
    schedule_name text        NOT NULL REFERENCES tq_schedules (name) ON DELETE CASCADE,
    fire_at       timestamptz NOT NULL,
    task_id       uuid        NOT NULL,
    fired_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_name, fire_at)
);

CREATE INDEX tq_schedule_fires_fired_idx ON tq_schedule_fires (fired_at);
