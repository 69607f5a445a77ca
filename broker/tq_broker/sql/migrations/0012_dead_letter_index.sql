-- Dead letters by task type, for the dashboard's dead-letter page and the leader's
-- tq_tasks_dead_letter gauge: without it both scan every finished task of the retention window.
-- Dead letters are few, so the index stays small.

CREATE INDEX tq_tasks_dead_letter_idx ON tq_tasks (task_type, created_at)
    WHERE status = 'dead_letter';
