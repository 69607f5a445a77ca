-- Single-use WebSocket tickets (a browser's stand-in for its key in a URL), and the key that
-- registered each worker (only that key, or an admin, may act as the worker).

CREATE TABLE tq_ws_tickets (
    ticket_hash bytea       PRIMARY KEY,
    key_id      uuid,
    bootstrap   text,  -- a key from the broker's environment (then key_id is NULL)
    expires_at  timestamptz NOT NULL
);

ALTER TABLE tq_workers ADD COLUMN key_id uuid;
