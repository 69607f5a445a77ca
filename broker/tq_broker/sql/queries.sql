-- Every statement the broker runs, by name. Python refers to them as queries["name"].
-- Guards on state live here, in the WHERE clauses: the database decides, Python does not re-check.

-- task_insert --
-- Store one task; with an idempotency key, a repeat inserts nothing and returns no row. A limit
-- the submit omits (NULL) is the task type's registered default, else the contract's.
INSERT INTO tq_tasks (task_id, task_type, payload, priority, run_at, timeout_seconds,
                      max_retries, idempotency_key, request_digest, key_id)
SELECT %(task_id)s, %(task_type)s, %(payload)s, %(priority)s, COALESCE(%(run_at)s, now()),
       COALESCE(%(timeout_seconds)s::integer, d.timeout_seconds, %(timeout_default)s),
       COALESCE(%(max_retries)s::integer, d.max_retries, %(max_retries_default)s),
       %(idempotency_key)s, %(request_digest)s, %(key_id)s
FROM (VALUES (1)) AS one
LEFT JOIN tq_task_type_defaults AS d ON d.task_type = %(task_type)s
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING task_id, task_type, status, updated_at, run_at <= now() AS ready;

-- key_pending_lock --
-- Serialise submits of one capped key for the rest of the transaction.
SELECT pg_advisory_xact_lock(746120, hashtext(%(key_id)s::text)) IS NULL AS locked;

-- key_pending_count --
-- A capped key's waiting tasks, counted no further than its cap.
SELECT count(*) AS pending FROM (
    SELECT 1 FROM tq_tasks
    WHERE key_id = %(key_id)s AND status IN ('pending', 'failed')
    LIMIT %(max_pending)s
) AS waiting;

-- task_get_by_idempotency_key --
-- The task an earlier submit with this key created, with the digest of that request.
SELECT task_id, status, request_digest FROM tq_tasks WHERE idempotency_key = %(idempotency_key)s;

-- task_insert_many --
-- Store a batch in one statement; the caller's transaction makes it all-or-nothing. The arrays
-- go in binary (%(name)b): the text format escaped every element with a regular expression,
-- the largest cost of a batch in the broker.
INSERT INTO tq_tasks (task_id, task_type, payload, priority, run_at, timeout_seconds, max_retries,
                      key_id)
SELECT b.task_id, b.task_type, b.payload, b.priority, COALESCE(b.run_at, now()),
       COALESCE(b.timeout_seconds, d.timeout_seconds, %(timeout_default)s),
       COALESCE(b.max_retries, d.max_retries, %(max_retries_default)s), %(key_id)s::uuid
FROM unnest(%(task_ids)b::uuid[], %(task_types)b::text[], %(payloads)b::bytea[],
            %(priorities)b::smallint[], %(run_ats)b::timestamptz[], %(timeouts)b::integer[],
            %(max_retries)b::integer[])
     AS b(task_id, task_type, payload, priority, run_at, timeout_seconds, max_retries)
LEFT JOIN tq_task_type_defaults AS d ON d.task_type = b.task_type
RETURNING task_id, task_type, status, updated_at, run_at <= now() AS ready;

-- tasks_announce_ready --
-- Wake waiting claims on every replica: one 'type n' notification per task type.
SELECT count(pg_notify('tq_task_ready', p)) AS sent FROM unnest(%(payloads)b::text[]) AS p;

-- task_get --
-- One task with everything the GET endpoint shows.
SELECT task_id, task_type, status, priority, created_at, updated_at, result, error,
       retry_count, worker_id, max_retries, timeout_seconds, run_at,
       abort_requested_at AS aborted_at, aborted_by, progress_fraction, progress_message,
       progress_updated_at
FROM tq_tasks WHERE task_id = %(task_id)s;

-- task_payload --
-- One task's payload (the dashboard's detail page; GET task leaves it out, as the contract does).
SELECT payload FROM tq_tasks WHERE task_id = %(task_id)s;

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

-- task_attempts --
-- A task's attempts, oldest first; one row with attempt NULL for a task without any, none for
-- an unknown task.
SELECT a.attempt, a.worker_id, a.claimed_at, a.finished_at, a.outcome, a.error
FROM tq_tasks AS t
LEFT JOIN tq_task_attempts AS a ON a.task_id = t.task_id
WHERE t.task_id = %(task_id)s
ORDER BY a.attempt;

-- task_cancel --
-- Cancel a task that is waiting (pending, or failed and waiting for its retry). One statement:
-- once it returns a row, no claim can take the task.
UPDATE tq_tasks
SET status = 'cancelled', updated_at = now(), finished_at = now(), lease_token = NULL
WHERE task_id = %(task_id)s AND status IN ('pending', 'failed')
RETURNING task_id, task_type, status, updated_at;

-- task_abort --
-- Abort a task: a waiting one (pending, or failed awaiting its retry) is cancelled at once, as
-- by task_cancel; a running one is marked (who and when, kept from the first request) and its
-- worker hears it on its next heartbeat. One statement; no row: unknown or already finished.
UPDATE tq_tasks
SET status = CASE WHEN status = 'in_progress' THEN status ELSE 'cancelled' END,
    finished_at = CASE WHEN status = 'in_progress' THEN finished_at ELSE now() END,
    lease_token = CASE WHEN status = 'in_progress' THEN lease_token END,
    aborted_by = CASE WHEN abort_requested_at IS NULL THEN %(aborted_by)s ELSE aborted_by END,
    abort_requested_at = coalesce(abort_requested_at, now()),
    updated_at = CASE WHEN abort_requested_at IS NULL THEN now() ELSE updated_at END
WHERE task_id = %(task_id)s AND status IN ('pending', 'failed', 'in_progress')
RETURNING task_id, task_type, status, updated_at, abort_requested_at AS aborted_at, aborted_by;

-- stats --
-- System-wide counters for GET /api/v1/stats; buckets: high >= 200, normal 100-199, low <= 99.
-- pending_count: every pending task (as the contract and the list filter count them); the
-- buckets count queue depth, the tasks due now; scheduled_count: waiting, not yet due.
-- Three passes, each over a partial index's rows only (waiting; in progress; finished in the
-- last hour), never over the whole table: finished tasks of the retention period are not read.
-- A dead letter counts by finished_at, the moment it was dead-lettered (its updated_at then).
SELECT w.pending_count, w.scheduled_count, p.in_progress_count, f.completed_last_hour,
       w.failed_waiting + f.dead_lettered AS failed_last_hour,
       (SELECT count(*) FROM tq_workers WHERE status <> 'offline') AS worker_count,
       f.avg_processing_time_ms, w.high, w.normal, w.low
FROM (SELECT count(*) FILTER (WHERE status = 'pending') AS pending_count,
             count(*) FILTER (WHERE run_at > now()) AS scheduled_count,
             count(*) FILTER (WHERE status = 'failed'
                                AND updated_at > now() - interval '1 hour') AS failed_waiting,
             count(*) FILTER (WHERE status = 'pending' AND run_at <= now()
                                AND tq_priority_bucket(priority) = 'high') AS high,
             count(*) FILTER (WHERE status = 'pending' AND run_at <= now()
                                AND tq_priority_bucket(priority) = 'normal') AS normal,
             count(*) FILTER (WHERE status = 'pending' AND run_at <= now()
                                AND tq_priority_bucket(priority) = 'low') AS low
        FROM tq_tasks WHERE status IN ('pending', 'failed')) AS w,
     (SELECT count(*) AS in_progress_count FROM tq_tasks WHERE status = 'in_progress') AS p,
     (SELECT count(*) FILTER (WHERE status = 'completed') AS completed_last_hour,
             count(*) FILTER (WHERE status = 'dead_letter') AS dead_lettered,
             COALESCE(avg(extract(epoch FROM finished_at - claimed_at) * 1000)
                      FILTER (WHERE status = 'completed' AND claimed_at IS NOT NULL),
                      0)::float8 AS avg_processing_time_ms
        FROM tq_tasks WHERE finished_at > now() - interval '1 hour') AS f;

-- health --
-- The two numbers /health shows.
SELECT (SELECT count(*) FROM tq_workers WHERE status <> 'offline') AS connected_workers,
       (SELECT count(*) FROM tq_tasks WHERE status = 'pending') AS pending_tasks;

-- worker_list --
-- Workers that have not been marked offline.
SELECT worker_id, registered_at, last_heartbeat, current_tasks, cpu_usage_percent, memory_usage_mb,
       task_types, concurrency, status
FROM tq_workers WHERE status <> 'offline'
ORDER BY registered_at, worker_id;

-- db_now --
-- The database's clock: the one clock every replica's scheduler agrees on.
SELECT now() AS now;

-- schedule_insert --
-- Store a new schedule; a taken name is a unique violation (409).
INSERT INTO tq_schedules (name, cron, interval_seconds, timezone, task_type, payload, priority,
                          timeout_seconds, max_retries, paused, missed_fires, anchor_at,
                          next_fire_at)
VALUES (%(name)s, %(cron)s, %(interval_seconds)s, %(timezone)s, %(task_type)s, %(payload)s,
        %(priority)s, %(timeout_seconds)s, %(max_retries)s, %(paused)s, %(missed_fires)s,
        %(anchor_at)s, %(next_fire_at)s)
RETURNING *;

-- schedule_get --
-- One schedule.
SELECT * FROM tq_schedules WHERE name = %(name)s;

-- schedule_get_for_update --
-- One schedule, locked for the rest of the transaction (an edit, or a fire).
SELECT * FROM tq_schedules WHERE name = %(name)s FOR UPDATE;

-- schedule_list --
-- Schedules by name.
SELECT * FROM tq_schedules ORDER BY name LIMIT %(limit)s OFFSET %(offset)s;

-- schedule_update --
-- Write an edited schedule (the caller holds its row lock).
UPDATE tq_schedules
SET cron = %(cron)s, interval_seconds = %(interval_seconds)s, timezone = %(timezone)s,
    task_type = %(task_type)s, payload = %(payload)s, priority = %(priority)s,
    timeout_seconds = %(timeout_seconds)s, max_retries = %(max_retries)s, paused = %(paused)s,
    missed_fires = %(missed_fires)s, anchor_at = %(anchor_at)s, next_fire_at = %(next_fire_at)s,
    updated_at = now()
WHERE name = %(name)s
RETURNING *;

-- schedule_delete --
-- Delete a schedule (its fire records go with it).
DELETE FROM tq_schedules WHERE name = %(name)s RETURNING name;

-- schedule_due --
-- Names of unpaused schedules whose next fire time has come, earliest first.
SELECT name FROM tq_schedules
WHERE NOT paused AND next_fire_at <= %(now)s
ORDER BY next_fire_at LIMIT %(limit)s;

-- schedule_lock_due --
-- A due schedule, locked; none if another leader holds it or it changed since it was listed.
SELECT * FROM tq_schedules
WHERE name = %(name)s AND NOT paused AND next_fire_at <= %(now)s
FOR UPDATE SKIP LOCKED;

-- schedule_fire_insert --
-- Record a fire; a fire time already recorded returns no row (and no task must be made).
INSERT INTO tq_schedule_fires (schedule_name, fire_at, task_id)
VALUES (%(name)s, %(fire_at)s, %(task_id)s)
ON CONFLICT (schedule_name, fire_at) DO NOTHING
RETURNING task_id;

-- schedule_advance --
-- Move a schedule past a fire (the caller holds its row lock).
UPDATE tq_schedules
SET next_fire_at = %(next_fire_at)s,
    last_fire_at = COALESCE(%(last_fire_at)s, last_fire_at),
    last_task_id = COALESCE(%(last_task_id)s, last_task_id)
WHERE name = %(name)s;

-- schedule_fire_delete_old --
-- Forget fire records older than the retention period, a batch at a time.
DELETE FROM tq_schedule_fires
WHERE ctid IN (SELECT ctid FROM tq_schedule_fires
               WHERE fired_at < now() - %(retention_seconds)s * interval '1 second'
               LIMIT %(batch_size)s);

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

-- worker_register --
-- Register a worker, or bring a known one back online; a known one only by the key that
-- registered it (or an admin: %(any_key)s). No row: the id belongs to another key.
-- A registration sets the defaults of every type it serves (its task_options; NULL where it
-- gives none): the latest registration of a type wins. Task types arrive deduplicated.
WITH registered AS (
    INSERT INTO tq_workers (worker_id, task_types, concurrency, prefetch, key_id)
    VALUES (%(worker_id)s, %(task_types)s, %(concurrency)s, %(prefetch)s, %(key_id)s)
    ON CONFLICT (worker_id) DO UPDATE
    SET task_types = EXCLUDED.task_types, concurrency = EXCLUDED.concurrency,
        prefetch = EXCLUDED.prefetch, status = 'online',
        last_heartbeat = now(), registered_at = CASE WHEN tq_workers.status = 'offline'
                                                     THEN now() ELSE tq_workers.registered_at END
    WHERE %(any_key)s OR tq_workers.key_id IS NOT DISTINCT FROM EXCLUDED.key_id
    RETURNING worker_id
), defaults AS (
    INSERT INTO tq_task_type_defaults (task_type, max_retries, timeout_seconds, worker_id)
    SELECT o.task_type, o.max_retries, o.timeout_seconds, r.worker_id
    FROM registered AS r,
         unnest(%(task_types)s::text[], %(default_max_retries)s::integer[],
                %(default_timeouts)s::integer[]) AS o(task_type, max_retries, timeout_seconds)
    ON CONFLICT (task_type) DO UPDATE
    SET max_retries = EXCLUDED.max_retries, timeout_seconds = EXCLUDED.timeout_seconds,
        worker_id = EXCLUDED.worker_id, updated_at = now()
    WHERE (tq_task_type_defaults.max_retries, tq_task_type_defaults.timeout_seconds)
          IS DISTINCT FROM (EXCLUDED.max_retries, EXCLUDED.timeout_seconds)
)
SELECT worker_id FROM registered;

-- worker_heartbeat --
-- Record liveness and load of a worker that has not been marked offline.
UPDATE tq_workers
SET last_heartbeat = now(), cpu_usage_percent = %(cpu_usage_percent)s,
    memory_usage_mb = %(memory_usage_mb)s, current_tasks = %(current_tasks)s
WHERE worker_id = %(worker_id)s AND status <> 'offline'
  AND (%(any_key)s OR key_id IS NOT DISTINCT FROM %(key_id)s)
RETURNING worker_id, concurrency + prefetch AS lease_max;

-- worker_get --
-- A worker's registration: its status and the key that registered it.
SELECT worker_id, task_types, status, key_id FROM tq_workers WHERE worker_id = %(worker_id)s;

-- worker_drain --
-- A worker stopping: it claims nothing more (its waiting claim ends now, on every replica), but
-- keeps its leases until it has reported and released what it holds.
UPDATE tq_workers SET status = 'draining'
WHERE worker_id = %(worker_id)s AND status <> 'offline'
RETURNING worker_id, pg_notify('tq_worker_stop', worker_id) IS NULL AS notified;

-- worker_set_offline --
-- A worker leaving: offline now, so no claim is made for it from here on. It waits for a claim
-- statement that holds the worker's row (FOR SHARE), so what that claim took is seen by the
-- next statement, worker_expire_leases, in the same transaction.
UPDATE tq_workers SET status = 'offline', current_tasks = 0
WHERE worker_id = %(worker_id)s
RETURNING worker_id, pg_notify('tq_worker_stop', worker_id) IS NULL AS notified;

-- worker_expire_leases --
-- Whatever a leaving worker still holds is due for rescue at once (a graceful worker has
-- reported or released everything first, so this finds nothing).
UPDATE tq_tasks SET lease_expires_at = now()
WHERE worker_id = %(worker_id)s AND status = 'in_progress';

-- task_claim --
-- Hand out up to max_tasks ready tasks of the worker's types, best priority first, oldest first,
-- only while the worker is online: its row is held FOR SHARE for the statement, so a concurrent
-- drain or deregister either waits for this claim (and then sees what it took) or commits first
-- (and this claim takes nothing). SKIP LOCKED lets concurrent claims take disjoint rows.
-- A row per task claimed, each with the worker's types; with none, one row without a task
-- (worker_task_types NULL: the worker is not online).
WITH worker AS (
    SELECT worker_id, task_types FROM tq_workers
    WHERE worker_id = %(worker_id)s AND status = 'online'
      AND (%(any_key)s OR key_id IS NOT DISTINCT FROM %(key_id)s)
    FOR SHARE
), ready AS (
    -- Per task type, the best max_tasks from the type's ready index (an ordered scan that stops
    -- after max_tasks, whatever the backlog of other types); then the best max_tasks of those.
    -- A worker of k types locks up to k * max_tasks rows for this statement and claims
    -- max_tasks: a concurrent claim skips the others until it commits (milliseconds).
    SELECT r.task_id
    FROM (SELECT DISTINCT unnest(task_types) AS task_type FROM worker) AS wt
    CROSS JOIN LATERAL (
        SELECT task_id, priority, run_at FROM tq_tasks
        WHERE task_type = wt.task_type AND status IN ('pending', 'failed') AND run_at <= now()
        ORDER BY priority DESC, run_at
        LIMIT %(max_tasks)s
        FOR UPDATE SKIP LOCKED
    ) AS r
    ORDER BY r.priority DESC, r.run_at
    LIMIT %(max_tasks)s
), claimed AS (
    UPDATE tq_tasks AS t
    SET status = 'in_progress', worker_id = %(worker_id)s, lease_token = gen_random_uuid(),
        claimed_at = now(), progress_fraction = NULL, progress_message = NULL,
        progress_updated_at = NULL,
        lease_expires_at = now() + %(lease_ttl_seconds)s * interval '1 second',
        updated_at = now(), attempts = t.attempts + 1
    WHERE t.task_id = ANY(ARRAY(SELECT task_id FROM ready))
    RETURNING t.task_id, t.task_type, t.payload, t.priority, t.lease_token, t.lease_expires_at,
              t.timeout_seconds, t.retry_count, t.max_retries, t.run_at, t.claimed_at, t.status,
              t.updated_at, t.attempts
), opened AS (
    INSERT INTO tq_task_attempts (task_id, attempt, worker_id, claimed_at)
    SELECT task_id, attempts, %(worker_id)s, claimed_at FROM claimed
), trimmed AS (  -- keep the last %(attempts_kept)s attempts of a task
    DELETE FROM tq_task_attempts AS a USING claimed AS c
    WHERE a.task_id = c.task_id AND c.attempts > %(attempts_kept)s
      AND a.attempt <= c.attempts - %(attempts_kept)s
)
SELECT w.task_types AS worker_task_types, c.*
FROM (VALUES (1)) AS one
LEFT JOIN worker AS w ON true
LEFT JOIN claimed AS c ON true;

-- task_types_ready --
-- Which of these task types have a task ready to claim now (for waiting claims: readiness by
-- time sends no notification).
SELECT t AS task_type FROM unnest(%(task_types)s::text[]) AS t
WHERE EXISTS (SELECT 1 FROM tq_tasks
              WHERE task_type = t AND status IN ('pending', 'failed') AND run_at <= now());

-- task_renew_leases --
-- Extend the leases this worker still holds; a stale token, or another worker's lease, renews
-- nothing. The hard deadline (claimed_at + timeout) is not moved. A lease with a progress report
-- (fraction not NULL) stores it (last value wins). `abort`: the task was asked to stop.
UPDATE tq_tasks AS t
SET lease_expires_at = now() + %(lease_ttl_seconds)s * interval '1 second',
    progress_fraction = coalesce(h.fraction, t.progress_fraction),
    progress_message = CASE WHEN h.fraction IS NULL THEN t.progress_message ELSE h.message END,
    progress_updated_at = CASE WHEN h.fraction IS NULL THEN t.progress_updated_at ELSE now() END,
    updated_at = CASE WHEN h.fraction IS NULL THEN t.updated_at ELSE now() END
FROM unnest(%(task_ids)s::uuid[], %(lease_tokens)s::uuid[], %(fractions)s::float8[],
            %(messages)s::text[]) AS h(task_id, lease_token, fraction, message)
WHERE t.task_id = h.task_id AND t.lease_token = h.lease_token AND t.status = 'in_progress'
  AND t.worker_id = %(worker_id)s
RETURNING t.task_id, t.task_type, t.status, t.updated_at, h.fraction IS NOT NULL AS progressed,
          t.abort_requested_at IS NOT NULL AS abort, t.progress_fraction, t.progress_message,
          t.progress_updated_at;

-- task_complete_many --
-- Record results of tasks whose lease is still current; others are untouched. A task asked to
-- abort ends cancelled whatever its handler returned (the result is kept).
WITH completed AS (
    UPDATE tq_tasks AS t
    SET status = CASE WHEN t.abort_requested_at IS NULL THEN 'completed' ELSE 'cancelled' END,
        result = c.result, error = NULL, lease_token = NULL,
        lease_expires_at = NULL, finished_at = now(), updated_at = now()
    FROM unnest(%(task_ids)b::uuid[], %(lease_tokens)b::uuid[], %(results)b::bytea[])
         AS c(task_id, lease_token, result)
    WHERE t.task_id = c.task_id AND t.lease_token = c.lease_token AND t.status = 'in_progress'
    RETURNING t.task_id, t.task_type, t.status, t.claimed_at, t.finished_at, t.updated_at,
              t.attempts, t.abort_requested_at AS aborted_at, t.aborted_by
), closed AS (
    UPDATE tq_task_attempts AS a SET finished_at = c.finished_at, outcome = c.status
    FROM completed AS c WHERE a.task_id = c.task_id AND a.attempt = c.attempts
)
SELECT task_id, task_type, status, claimed_at, finished_at, updated_at, aborted_at, aborted_by
FROM completed;

-- task_fail_many --
-- A failed attempt: the rule is the SQL function tq_ended_attempt (migration 0011): cancelled
-- if the task was asked to abort, else tq_failed_attempt (migration 0008); the error is kept
-- on the task (the latest) and on its attempt.
WITH failed AS (
    UPDATE tq_tasks AS t
    SET (status, retry_count, run_at, finished_at) = (
            SELECT a.status, a.retry_count, a.run_at, a.finished_at
            FROM tq_ended_attempt(t.abort_requested_at IS NOT NULL, t.run_at,
                                  t.retry_count, t.max_retries, f.retryable,
                                  %(backoff_base_seconds)s::float8,
                                  %(backoff_cap_seconds)s::float8, f.retry_delay) AS a),
        error = f.error, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM unnest(%(task_ids)s::uuid[], %(lease_tokens)s::uuid[], %(errors)s::text[],
                %(retryable)s::bool[], %(retry_delays)s::float8[])
         AS f(task_id, lease_token, error, retryable, retry_delay)
    WHERE t.task_id = f.task_id AND t.lease_token = f.lease_token AND t.status = 'in_progress'
    RETURNING t.task_id, t.task_type, t.status, t.updated_at, t.attempts, t.error,
              t.abort_requested_at AS aborted_at, t.aborted_by
), closed AS (
    UPDATE tq_task_attempts AS a
    SET finished_at = now(), error = f.error,
        outcome = CASE WHEN f.status = 'cancelled' THEN 'cancelled' ELSE 'failed' END
    FROM failed AS f WHERE a.task_id = f.task_id AND a.attempt = f.attempts
)
SELECT task_id, task_type, status, updated_at, aborted_at, aborted_by FROM failed;

-- task_release_many --
-- Hand back claimed tasks that never started: pending again, no attempt counted; a task asked
-- to abort meanwhile is cancelled instead.
WITH released AS (
    UPDATE tq_tasks AS t
    SET status = CASE WHEN t.abort_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
        finished_at = CASE WHEN t.abort_requested_at IS NULL THEN NULL ELSE now() END,
        lease_token = NULL, lease_expires_at = NULL, claimed_at = NULL,
        worker_id = NULL, updated_at = now()
    FROM unnest(%(task_ids)b::uuid[], %(lease_tokens)b::uuid[]) AS r(task_id, lease_token)
    WHERE t.task_id = r.task_id AND t.lease_token = r.lease_token AND t.status = 'in_progress'
    RETURNING t.task_id, t.task_type, t.status, t.updated_at, t.attempts
), closed AS (
    UPDATE tq_task_attempts AS a
    SET finished_at = now(),
        outcome = CASE WHEN r.status = 'cancelled' THEN 'cancelled' ELSE 'released' END
    FROM released AS r WHERE a.task_id = r.task_id AND a.attempt = r.attempts
), notified AS (
    SELECT pg_notify('tq_task_ready', task_type || ' ' || count(*)) FROM released
    WHERE status = 'pending' GROUP BY task_type
)
SELECT task_id, task_type, status, updated_at, (SELECT count(*) FROM notified) AS notified
FROM released;

-- task_requeue --
-- Admin: give a dead-lettered task a fresh set of attempts.
WITH requeued AS (
    UPDATE tq_tasks
    SET status = 'pending', retry_count = 0, run_at = now(), finished_at = NULL,
        lease_token = NULL, lease_expires_at = NULL, claimed_at = NULL, updated_at = now()
    WHERE task_id = %(task_id)s AND status = 'dead_letter'
    RETURNING task_id, task_type, status, updated_at
)
SELECT task_id, task_type, status, updated_at,
       pg_notify('tq_task_ready', task_type || ' 1') IS NULL AS notified
FROM requeued;

-- task_requeue_many --
-- Admin: requeue up to `limit` dead letters at once, oldest first, optionally only of one task
-- type and/or only the given ids. Locked rows are skipped (a concurrent requeue has them).
WITH chosen AS (
    SELECT task_id FROM tq_tasks
    WHERE status = 'dead_letter'
      AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
      AND (%(task_ids)s::uuid[] IS NULL OR task_id = ANY(%(task_ids)s::uuid[]))
    ORDER BY created_at, task_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), requeued AS (
    UPDATE tq_tasks AS t
    SET status = 'pending', retry_count = 0, run_at = now(), finished_at = NULL,
        lease_token = NULL, lease_expires_at = NULL, claimed_at = NULL, updated_at = now()
    FROM chosen WHERE t.task_id = chosen.task_id AND t.status = 'dead_letter'
    RETURNING t.task_id, t.task_type, t.status, t.updated_at
), notified AS (
    SELECT pg_notify('tq_task_ready', task_type || ' ' || count(*)) FROM requeued
    GROUP BY task_type
)
SELECT task_id, task_type, status, updated_at, (SELECT count(*) FROM notified) AS notified
FROM requeued;

-- task_dead_letter_exists --
-- Whether dead letters matching a bulk requeue's filter remain.
SELECT EXISTS (
    SELECT 1 FROM tq_tasks
    WHERE status = 'dead_letter'
      AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
      AND (%(task_ids)s::uuid[] IS NULL OR task_id = ANY(%(task_ids)s::uuid[]))
) AS remaining;

-- task_rescue_expired --
-- Leader sweep: an in-progress task whose lease expired (no heartbeat) or whose hard deadline
-- passed (claimed_at + timeout + grace) is a failed attempt; one asked to abort is cancelled
-- instead (tq_ended_attempt), also when its worker keeps heartbeating past the abort's grace
-- plus the deadline grace. Conditional on the lease it saw, so a completion that commits first
-- wins and a second leader rescues nothing twice.
WITH expired AS (
    SELECT task_id, lease_token,
           CASE WHEN lease_expires_at <= now()
                THEN 'lease expired: worker ' || coalesce(worker_id, '?') || ' stopped heartbeating'
                WHEN abort_requested_at + %(abort_limit_seconds)s * interval '1 second' <= now()
                THEN 'aborted: worker ' || coalesce(worker_id, '?') || ' did not stop the task'
                ELSE 'deadline exceeded: still running ' || timeout_seconds
                     || 's after it was claimed (worker ' || coalesce(worker_id, '?') || ')'
           END AS reason
    FROM tq_tasks
    WHERE status = 'in_progress'
      AND (lease_expires_at <= now()
           OR claimed_at + (timeout_seconds + %(grace_seconds)s) * interval '1 second' <= now()
           OR abort_requested_at + %(abort_limit_seconds)s * interval '1 second' <= now())
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
), rescued AS (
    UPDATE tq_tasks AS t
    SET (status, retry_count, run_at, finished_at) = (
            SELECT a.status, a.retry_count, a.run_at, a.finished_at
            FROM tq_ended_attempt(t.abort_requested_at IS NOT NULL, t.run_at,
                                  t.retry_count, t.max_retries, true,
                                  %(backoff_base_seconds)s::float8,
                                  %(backoff_cap_seconds)s::float8, NULL) AS a),
        error = e.reason, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM expired AS e
    WHERE t.task_id = e.task_id AND t.lease_token = e.lease_token AND t.status = 'in_progress'
    RETURNING t.task_id, t.task_type, t.status, t.updated_at, t.attempts, t.error,
              t.abort_requested_at AS aborted_at, t.aborted_by
), closed AS (
    UPDATE tq_task_attempts AS a
    SET finished_at = now(), error = r.error,
        outcome = CASE WHEN r.status = 'cancelled' THEN 'cancelled' ELSE 'expired' END
    FROM rescued AS r WHERE a.task_id = r.task_id AND a.attempt = r.attempts
)
SELECT task_id, task_type, status, updated_at, aborted_at, aborted_by FROM rescued;

-- worker_mark_offline --
-- Leader sweep: workers silent for longer than the limit are offline.
UPDATE tq_workers SET status = 'offline', current_tasks = 0
WHERE status <> 'offline' AND last_heartbeat < now() - %(silent_seconds)s * interval '1 second'
RETURNING worker_id;

-- task_delete_finished --
-- Leader sweep: delete a small batch of tasks finished before the retention period.
DELETE FROM tq_tasks
WHERE task_id IN (
    SELECT task_id FROM tq_tasks
    WHERE finished_at < now() - %(retention_seconds)s * interval '1 second'
      AND status IN ('completed', 'dead_letter', 'cancelled')
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
);

-- worker_delete_offline --
-- Leader sweep: forget workers offline for longer than the retention period.
DELETE FROM tq_workers
WHERE status = 'offline' AND last_heartbeat < now() - %(retention_seconds)s * interval '1 second';


-- key_insert --
-- Store a new API key: only the hash of its secret.
INSERT INTO tq_api_keys (key_id, name, prefix, secret_hash, permissions, rate_limit, burst,
                         max_pending)
VALUES (%(key_id)s, %(name)s, %(prefix)s, %(secret_hash)s, %(permissions)s, %(rate_limit)s,
        %(burst)s, %(max_pending)s)
RETURNING key_id, name, prefix, permissions, rate_limit, burst, max_pending, created_at,
          last_used_at, revoked_at;

-- key_list --
-- Every key, newest first; never the hash.
SELECT key_id, name, prefix, permissions, rate_limit, burst, max_pending, created_at,
       last_used_at, revoked_at
FROM tq_api_keys ORDER BY created_at DESC, key_id;

-- key_get_by_hash --
-- The key a presented secret hashes to, if it is not revoked.
SELECT key_id, name, permissions, rate_limit, burst, max_pending, secret_hash
FROM tq_api_keys WHERE secret_hash = %(secret_hash)s AND revoked_at IS NULL;

-- key_get_by_id --
-- A key by id, if it is not revoked (streams re-check their key with this).
SELECT key_id, name, permissions, rate_limit, burst, max_pending, secret_hash
FROM tq_api_keys WHERE key_id = %(key_id)s AND revoked_at IS NULL;

-- ws_ticket_insert --
-- A single-use WebSocket ticket for a key (only its hash is stored); expired ones go too.
WITH expired AS (
    DELETE FROM tq_ws_tickets WHERE expires_at < now()
)
INSERT INTO tq_ws_tickets (ticket_hash, key_id, bootstrap, expires_at)
VALUES (%(ticket_hash)s, %(key_id)s, %(bootstrap)s,
        now() + %(ttl_seconds)s * interval '1 second');

-- ws_ticket_redeem --
-- Use a ticket up (one statement: a second use finds nothing), with its key as of now.
WITH redeemed AS (
    DELETE FROM tq_ws_tickets WHERE ticket_hash = %(ticket_hash)s AND expires_at > now()
    RETURNING key_id, bootstrap
)
SELECT r.bootstrap, k.key_id, k.name, k.permissions, k.rate_limit, k.burst, k.max_pending,
       k.secret_hash
FROM redeemed AS r
LEFT JOIN tq_api_keys AS k ON k.key_id = r.key_id AND k.revoked_at IS NULL;

-- key_revoke --
-- Revoke a key (idempotent); returns nothing for an unknown id.
UPDATE tq_api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE key_id = %(key_id)s
RETURNING key_id;

-- key_touch_many --
-- Record that keys were used (flushed in the background, not per request).
UPDATE tq_api_keys SET last_used_at = now() WHERE key_id = ANY(%(key_ids)s::uuid[]);

-- rate_bucket_lock --
-- Create a key's bucket full, or lock the existing one for the rest of the transaction.
INSERT INTO tq_rate_buckets (bucket, tokens) VALUES (%(bucket)s, %(burst)s)
ON CONFLICT (bucket) DO UPDATE SET tokens = tq_rate_buckets.tokens;

-- rate_bucket_read --
-- The locked bucket and the database's clock, read after the lock was granted (clock_timestamp,
-- not now(): a transaction that waited for the lock must not see time from before the wait).
SELECT tokens, updated_at, clock_timestamp() AS as_of FROM tq_rate_buckets
WHERE bucket = %(bucket)s;

-- rate_bucket_store --
-- Write back the bucket after a grant, as of the clock reading its tokens were computed for.
UPDATE tq_rate_buckets SET tokens = %(tokens)s, updated_at = %(as_of)s WHERE bucket = %(bucket)s;

-- queue_depth --
-- Work waiting for the given task types: ready now, scheduled for later, and running; and the
-- types with ready tasks that no online worker serves (sorted, at most %(unserved_max)s). One
-- pass over the tasks, grouped by type.
WITH by_type AS (
    SELECT task_type,
           count(*) FILTER (WHERE status IN ('pending', 'failed') AND run_at <= now()) AS ready,
           count(*) FILTER (WHERE status IN ('pending', 'failed') AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE status = 'in_progress') AS in_progress
    FROM tq_tasks
    WHERE status IN ('pending', 'failed', 'in_progress')
      AND task_type = ANY(%(task_types)s::text[])
    GROUP BY task_type
)
SELECT coalesce(sum(ready), 0)::bigint AS ready,
       coalesce(sum(scheduled), 0)::bigint AS scheduled,
       coalesce(sum(in_progress), 0)::bigint AS in_progress,
       ARRAY(SELECT b.task_type FROM by_type AS b
             WHERE b.ready > 0
               AND NOT EXISTS (SELECT 1 FROM tq_workers AS w
                               WHERE w.status = 'online' AND b.task_type = ANY(w.task_types))
             ORDER BY b.task_type LIMIT %(unserved_max)s) AS unserved_task_types
FROM by_type;

-- event_listener_register --
-- This replica has subscribers; the row lapses unless renewed.
INSERT INTO tq_event_listeners (replica_id, expires_at)
VALUES (%(replica_id)s, now() + %(ttl_seconds)s * interval '1 second')
ON CONFLICT (replica_id) DO UPDATE SET expires_at = EXCLUDED.expires_at;

-- event_listener_unregister --
-- This replica's last subscriber left.
DELETE FROM tq_event_listeners WHERE replica_id = %(replica_id)s;

-- event_publish --
-- Fan committed task status changes out to every replica, one notification per chunk of
-- events, if any replica has a live subscriber. Run after the changes committed, so it sees
-- every subscriber registered before they did.
WITH listening AS (
    SELECT EXISTS (SELECT 1 FROM tq_event_listeners WHERE expires_at > now()) AS yes
)
SELECT (SELECT yes FROM listening) AS listening,
       (SELECT count(pg_notify('tq_task_events', p)) FROM unnest(%(payloads)b::text[]) AS p
         WHERE (SELECT yes FROM listening)) AS sent;

-- metrics_waiting --
-- Waiting tasks by type and priority bucket (high >= 200, normal 100-199, low <= 99): pending
-- ones, those waiting for their time (schedule_at or a retry's backoff), and the age of the
-- oldest one that is ready but unclaimed. One pass over the ready index.
SELECT task_type, tq_priority_bucket(priority) AS priority,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE run_at <= now()) AS ready,
       count(*) FILTER (WHERE run_at > now()) AS scheduled,
       COALESCE(extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())), 0)::float8
           AS oldest_ready_seconds
FROM tq_tasks WHERE status IN ('pending', 'failed') GROUP BY 1, 2;

-- metrics_dead_letter --
-- Dead letters by task type (through tq_tasks_dead_letter_idx).
SELECT task_type, count(*) AS dead_letter
FROM tq_tasks WHERE status = 'dead_letter' GROUP BY 1;

-- metrics_counts --
-- Tasks running and workers connected, for the leader's gauges.
SELECT (SELECT count(*) FROM tq_tasks WHERE status = 'in_progress') AS in_progress,
       (SELECT count(*) FROM tq_workers WHERE status <> 'offline') AS workers;

-- overview_in_progress --
-- Claimed tasks by type, for the dashboard (through the leased index).
SELECT task_type, count(*) AS in_progress
FROM tq_tasks WHERE status = 'in_progress' GROUP BY 1;

-- overview_throughput --
-- Per minute of the last hour: tasks completed, and failed attempts (dead-lettered, or failed
-- and waiting for a retry), for the dashboard's chart.
SELECT minute, sum(completed)::bigint AS completed, sum(failed)::bigint AS failed
FROM (
    SELECT date_trunc('minute', finished_at) AS minute,
           (status = 'completed')::int AS completed, (status = 'dead_letter')::int AS failed
    FROM tq_tasks WHERE finished_at > now() - interval '1 hour'
    UNION ALL
    SELECT date_trunc('minute', updated_at), 0, 1
    FROM tq_tasks WHERE status = 'failed' AND updated_at > now() - interval '1 hour'
) AS finished
GROUP BY minute ORDER BY minute;

-- overview_workers --
-- Workers by status, and the task types some online worker runs.
SELECT (SELECT count(*) FROM tq_workers WHERE status = 'online') AS online,
       (SELECT count(*) FROM tq_workers WHERE status = 'draining') AS draining,
       ARRAY(SELECT DISTINCT unnest(task_types) FROM tq_workers WHERE status = 'online')
           AS served_types,
       now() AS as_of;

