"""Migrations: explicit, tracked, locked, and what /ready makes of them."""

from __future__ import annotations

import json

import psycopg
from helpers import cli, fresh_database

from schema_registry.migrations_runner import known_versions


def test_status_lists_pending_then_applied_and_migrate_is_idempotent():
    with fresh_database() as url:
        env = {"DATABASE_URL": url}
        before = json.loads(cli("migrate", "--status", env=env).stdout)
        assert before == {"applied": [], "pending": known_versions()}
        first = cli("migrate", env=env)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["applied_now"] == known_versions()
        second = json.loads(cli("migrate", env=env).stdout)
        assert second["applied_now"] == []
        after = json.loads(cli("migrate", "--status", env=env).stdout)
        assert after == {"applied": known_versions(), "pending": []}


def test_status_keeps_migrations_of_a_later_release():
    with fresh_database() as url:
        env = {"DATABASE_URL": url}
        cli("migrate", env=env)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ('9999_later', %s)",
                ("0" * 64,),
            )
        status = json.loads(cli("migrate", "--status", env=env).stdout)
        assert "9999_later" in status["applied"]
        assert status["pending"] == []


def test_changed_applied_migration_is_refused():
    with fresh_database() as url:
        env = {"DATABASE_URL": url}
        cli("migrate", env=env)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE schema_migrations SET checksum = %s", ("f" * 64,))
        result = cli("migrate", env=env)
        assert result.returncode == 1
        assert "checksum mismatch" in result.stderr


def test_failed_migration_applies_nothing_of_itself():
    with fresh_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            # A foreign schema_events table makes 0002 fail after its first statement.
            conn.execute("CREATE TABLE schema_events (x int)")
        result = cli("migrate", env={"DATABASE_URL": url})
        assert result.returncode == 1
        assert "0002_compatibility_checks failed" in result.stderr
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('compatibility_checks')").fetchone()[0] is None
            applied = conn.execute("SELECT version FROM schema_migrations").fetchall()
            assert applied == [("0001_initial",)]


def test_migrate_without_database_is_a_clear_error():
    result = cli("migrate", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 1
    assert "migrate failed" in result.stderr
