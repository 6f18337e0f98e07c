-- Schemas, one row per (subject, version); content kept canonical with its sha256.
CREATE TABLE IF NOT EXISTS schemas (
    id UUID PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    version_major INTEGER NOT NULL CHECK (version_major >= 0),
    version_minor INTEGER NOT NULL CHECK (version_minor >= 0),
    version_patch INTEGER NOT NULL CHECK (version_patch >= 0),
    format TEXT NOT NULL CHECK (format IN ('JSON', 'AVRO', 'PROTOBUF')),
    content TEXT NOT NULL,
    content_hash CHAR(64) NOT NULL,
    state TEXT NOT NULL DEFAULT 'ACTIVE'
        CHECK (state IN ('DRAFT', 'ACTIVE', 'DEPRECATED', 'ARCHIVED', 'DELETED')),
    compatibility_mode TEXT NOT NULL,
    description TEXT,
    tags TEXT[] NOT NULL DEFAULT '{}',
    metadata JSONB NOT NULL DEFAULT '{}',
    created_by TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ,
    CONSTRAINT schemas_subject_version_key
        UNIQUE (namespace, name, version_major, version_minor, version_patch)
);

CREATE INDEX IF NOT EXISTS schemas_subject_idx ON schemas (subject);
CREATE INDEX IF NOT EXISTS schemas_content_hash_idx ON schemas (content_hash);

-- An append-only history of what happened to each schema.
CREATE TABLE IF NOT EXISTS schema_events (
    id BIGSERIAL PRIMARY KEY,
    schema_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    actor TEXT,
    details JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
