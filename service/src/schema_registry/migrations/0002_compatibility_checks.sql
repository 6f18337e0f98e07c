-- Expand-only: a record of compatibility checks run at registration and on request.
-- Older releases never read this table, so they keep working after it is added.
CREATE TABLE IF NOT EXISTS compatibility_checks (
    id BIGSERIAL PRIMARY KEY,
    schema_id UUID,
    compared_schema_id UUID,
    mode TEXT NOT NULL,
    is_compatible BOOLEAN NOT NULL,
    violations JSONB NOT NULL DEFAULT '[]',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS schema_events_schema_id_idx ON schema_events (schema_id);
