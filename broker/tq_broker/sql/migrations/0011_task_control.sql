-- Task control: aborting a task that already runs, and the progress its handler reports.

-- Who asked for an abort and when (set once; a pending task is cancelled at once, a running
-- one keeps running until its worker stops it). The rule of how an attempt of an aborted task
-- ends is tq_ended_attempt below.
ALTER TABLE tq_tasks ADD COLUMN abort_requested_at timestamptz;
ALTER TABLE tq_tasks ADD COLUMN aborted_by text;
-- The handler's last progress report (last value wins), carried by the worker's heartbeat.
ALTER TABLE tq_tasks ADD COLUMN progress_fraction double precision
    CHECK (progress_fraction BETWEEN 0 AND 1);
ALTER TABLE tq_tasks ADD COLUMN progress_message text;
ALTER TABLE tq_tasks ADD COLUMN progress_updated_at timestamptz;

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
