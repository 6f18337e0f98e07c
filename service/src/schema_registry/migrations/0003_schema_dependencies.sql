-- Expand-only: schema references (a name used inside the schema, and the subject and
-- version it names) with the schema each one resolved to at registration. A referenced
-- schema cannot be deleted while this table names it. Older releases never read it.
CREATE TABLE IF NOT EXISTS schema_dependencies (
    schema_id UUID NOT NULL REFERENCES schemas (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    referenced_subject TEXT NOT NULL,
    referenced_version TEXT NOT NULL,
    referenced_schema_id UUID NOT NULL REFERENCES schemas (id),
    PRIMARY KEY (schema_id, name)
);

CREATE INDEX IF NOT EXISTS schema_dependencies_referenced_idx
    ON schema_dependencies (referenced_schema_id);
