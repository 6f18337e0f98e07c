"""Applies the SQL migrations this release carries, under an advisory lock.

Migrations are expand/contract: a release only adds (tables, columns, indexes) so the
previous release keeps working against the migrated database. Applied ones are tracked
in schema_migrations with their sha256; a changed applied migration is an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg

# Arbitrary constant shared by every release: one migrator at a time per database.
MIGRATION_LOCK_ID = 724_311_905

_CREATE_TRACKING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version TEXT PRIMARY KEY,
    checksum CHAR(64) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: str  # file name without .sql, e.g. 0001_initial
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    """A migration could not be applied, or an applied one differs from this release's."""


def known_migrations() -> list[Migration]:
    folder = resources.files("schema_registry.migrations")
    files = sorted(entry for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def known_versions() -> list[str]:
    return [m.version for m in known_migrations()]


def _applied(conn: psycopg.Connection) -> dict[str, str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    return {version: checksum.strip() for version, checksum in rows}


def status(database_url: str) -> dict[str, list[str]]:
    """{applied: [...], pending: [...]}: applied lists every row, also later releases' ones."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        applied = _applied(conn)
    pending = [m.version for m in known_migrations() if m.version not in applied]
    return {"applied": sorted(applied), "pending": pending}


def migrate(database_url: str) -> list[str]:
    """Applies pending migrations, each in its own transaction; returns the applied ones."""
    done: list[str] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            conn.execute(_CREATE_TRACKING)
            applied = _applied(conn)
            for migration in known_migrations():
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version} was applied with different "
                            "content (checksum mismatch); refusing to continue"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                            (migration.version, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.version} failed: {exc}") from exc
                done.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return done
