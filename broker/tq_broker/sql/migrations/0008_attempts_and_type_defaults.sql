-- Every attempt of a task kept (the last 50), per-type defaults registered by workers, and a
-- worker's own retry delay in the failed-attempt rule.

-- Claims of a task so far: the number of its latest attempt (tq_task_attempts.attempt).
ALTER TABLE tq_tasks ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0);

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

-- The failed-attempt rule gains the worker's own delay: when given, the retry waits exactly
-- that long instead of the default backoff.
DROP FUNCTION tq_failed_attempt(integer, integer, boolean, double precision, double precision);

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
