-- Replicas that currently have live event subscribers (WebSocket, gRPC streams).

CREATE TABLE tq_event_listeners (
    replica_id text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
