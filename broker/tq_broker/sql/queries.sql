-- Every statement the broker runs, by name. Python refers to them as queries["name"].
-- Guards on state live here, in the WHERE clauses: the database decides, Python does not re-check.

-- task_insert --
-- Store one task; with an idempotency key, a repeat inserts nothing and returns no row.
INSERT INTO tq_tasks (task_id, task_type, payload, priority, run_at, timeout_seconds,
                      max_retries, idempotency_key, request_digest)
VALUES (%(task_id)s, %(task_type)s, %(payload)s, %(priority)s, COALESCE(%(run_at)s, now()),
        %(timeout_seconds)s, %(max_retries)s, %(idempotency_key)s, %(request_digest)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING task_id, status;

-- task_get_by_idempotency_key --
-- The task an earlier submit with this key created, with the digest of that request.
SELECT task_id, status, request_digest FROM tq_tasks WHERE idempotency_key = %(idempotency_key)s;

-- task_insert_many --
-- Store a batch in one statement; the caller's transaction makes it all-or-nothing.
INSERT INTO tq_tasks (task_id, task_type, payload, priority, run_at, timeout_seconds, max_retries)
SELECT b.task_id, b.task_type, b.payload, b.priority, COALESCE(b.run_at, now()),
       b.timeout_seconds, b.max_retries
FROM unnest(%(task_ids)s::uuid[], %(task_types)s::text[], %(payloads)s::bytea[],
            %(priorities)s::smallint[], %(run_ats)s::timestamptz[], %(timeouts)s::integer[],
            %(max_retries)s::integer[])
     AS b(task_id, task_type, payload, priority, run_at, timeout_seconds, max_retries);

-- task_get --
-- One task with everything the GET endpoint shows.
SELECT task_id, task_type, status, priority, created_at, updated_at, result, error,
       retry_count, worker_id
FROM tq_tasks WHERE task_id = %(task_id)s;

-- task_status --
-- The status of one task, to explain why a conditional update changed nothing.
SELECT status FROM tq_tasks WHERE task_id = %(task_id)s;

-- task_list --
-- Newest first, optionally filtered by status and task type.
SELECT task_id, task_type, status, priority, created_at, updated_at
FROM tq_tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
ORDER BY created_at DESC, task_id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- task_cancel --
-- Cancel a task that is waiting (pending, or failed and waiting for its retry). One statement:
-- once it returns a row, no claim can take the task.
UPDATE tq_tasks
SET status = 'cancelled', updated_at = now(), finished_at = now(), lease_token = NULL
WHERE task_id = %(task_id)s AND status IN ('pending', 'failed')
RETURNING task_id;

-- stats --
-- System-wide counters for GET /api/v1/stats; buckets: high >= 200, normal 100-199, low <= 99.
SELECT
    (SELECT count(*) FROM tq_tasks WHERE status = 'pending') AS pending_count,
    (SELECT count(*) FROM tq_tasks WHERE status = 'in_progress') AS in_progress_count,
    (SELECT count(*) FROM tq_tasks
      WHERE status = 'completed' AND finished_at > now() - interval '1 hour') AS completed_last_hour,
    (SELECT count(*) FROM tq_tasks
      WHERE status IN ('failed', 'dead_letter')
        AND updated_at > now() - interval '1 hour') AS failed_last_hour,
    (SELECT count(*) FROM tq_workers WHERE status <> 'offline') AS worker_count,
    (SELECT COALESCE(avg(extract(epoch FROM finished_at - claimed_at) * 1000), 0)::float8
       FROM tq_tasks
      WHERE status = 'completed' AND finished_at > now() - interval '1 hour'
        AND claimed_at IS NOT NULL) AS avg_processing_time_ms,
    q.high, q.normal, q.low
FROM (SELECT count(*) FILTER (WHERE priority >= 200) AS high,
             count(*) FILTER (WHERE priority BETWEEN 100 AND 199) AS normal,
             count(*) FILTER (WHERE priority <= 99) AS low
        FROM tq_tasks WHERE status = 'pending') AS q;

-- health --
-- The two numbers /health shows.
SELECT (SELECT count(*) FROM tq_workers WHERE status <> 'offline') AS connected_workers,
       (SELECT count(*) FROM tq_tasks WHERE status = 'pending') AS pending_tasks;

-- worker_list --
-- Workers that have not been marked offline.
SELECT worker_id, registered_at, last_heartbeat, current_tasks, cpu_usage_percent, memory_usage_mb
FROM tq_workers WHERE status <> 'offline'
ORDER BY registered_at, worker_id;

-- migration_lock --
-- Serialise migrations across replicas starting at once (transaction-scoped advisory lock).
SELECT pg_advisory_xact_lock(7461203925);

-- migration_ensure_table --
-- The bookkeeping table, created by whichever replica migrates first.
CREATE TABLE IF NOT EXISTS tq_schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- migration_applied --
-- Versions already applied.
SELECT version FROM tq_schema_migrations ORDER BY version;

-- migration_record --
-- Remember that a migration ran.
INSERT INTO tq_schema_migrations (version, name) VALUES (%(version)s, %(name)s);

-- leader_try_lock --
-- Take the leader's session-level advisory lock if nobody holds it.
SELECT pg_try_advisory_lock(7461203926) AS acquired;

-- leader_check --
-- A leader's proof of life; also keeps its session from idling out.
SELECT 1 AS alive;

-- leader_unlock --
-- Give up leadership on a graceful stop.
SELECT pg_advisory_unlock(7461203926) AS released;
