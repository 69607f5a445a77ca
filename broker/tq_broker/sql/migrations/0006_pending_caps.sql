-- An optional cap on a key's waiting tasks (pending, or failed and waiting for a retry).
-- Only tasks of a capped key record their key, so the index stays small.

ALTER TABLE tq_api_keys ADD COLUMN max_pending integer CHECK (max_pending >= 1);

ALTER TABLE tq_tasks ADD COLUMN key_id uuid;

CREATE INDEX tq_tasks_capped_key_idx ON tq_tasks (key_id)
    WHERE key_id IS NOT NULL AND status IN ('pending', 'failed');
