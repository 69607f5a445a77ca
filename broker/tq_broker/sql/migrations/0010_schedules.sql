-- Periodic schedules, fired by the leader (maintenance/scheduler.py). A fire is one row of
-- tq_schedule_fires, unique per (schedule, fire time), written in the same transaction as its
-- task and the schedule's advance: a fire time makes one task, whoever leads and whenever.

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
