-- Claims wake only for their own task types; workers say how many leases they may hold.

-- concurrency + prefetch: the most leases a worker holds, and renews in one heartbeat.
ALTER TABLE tq_workers ADD COLUMN prefetch integer NOT NULL DEFAULT 0 CHECK (prefetch >= 0);

-- 'type n' for each task type with n tasks ready now (scheduled ones wake nobody yet).
CREATE OR REPLACE FUNCTION tq_notify_task_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tq_task_ready', task_type || ' ' || count(*))
    FROM inserted WHERE run_at <= now() GROUP BY task_type;
    RETURN NULL;
END;
$$;

DROP TRIGGER tq_tasks_notify_ready ON tq_tasks;
CREATE TRIGGER tq_tasks_notify_ready AFTER INSERT ON tq_tasks
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION tq_notify_task_ready();
