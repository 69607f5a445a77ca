-- Rules of the task life cycle, each written once and called by every statement that needs it.

-- A failed attempt: with retries left (and the failure retryable), 'failed' until its backoff
-- ends; otherwise 'dead_letter'. Backoff = min(cap, base * 2^retry_count) with equal jitter
-- (between half and all of it). Used by task_fail_many and the rescuer's task_rescue_expired.
CREATE FUNCTION tq_failed_attempt(
    retries_done integer, max_retries integer, retryable boolean,
    backoff_base_seconds double precision, backoff_cap_seconds double precision,
    OUT status text, OUT retry_count integer, OUT run_at timestamptz, OUT finished_at timestamptz
) LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN again THEN 'failed' ELSE 'dead_letter' END,
           CASE WHEN again THEN retries_done + 1 ELSE retries_done END,
           now() + least(backoff_cap_seconds, backoff_base_seconds * power(2, retries_done))
                   * (0.5 + random() / 2) * interval '1 second',
           CASE WHEN again THEN NULL ELSE now() END
    FROM (SELECT retryable AND retries_done < max_retries AS again) AS decision
$$;

-- Priority buckets for stats and metrics: high >= 200, normal 100-199, low <= 99.
CREATE FUNCTION tq_priority_bucket(priority smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN priority >= 200 THEN 'high' WHEN priority >= 100 THEN 'normal' ELSE 'low' END
$$;
