"""backup.yml and restore.yml: a restore needs confirmation and brings data back."""

from __future__ import annotations

import re

import pytest

testinfra_hosts = ["db1"]


def sql(host, query: str) -> str:
    with host.sudo("postgres"):
        return host.check_output("psql -d schema_registry -tAc %s", query)


@pytest.fixture(scope="module")
def backed_up_marker(host, run_playbook):
    """A row written before a backup taken with backup.yml, then changed."""
    sql(
        host,
        "SET ROLE schema_registry; CREATE TABLE IF NOT EXISTS restore_probe (v text);"
        " TRUNCATE restore_probe; INSERT INTO restore_probe VALUES ('before-backup')",
    )
    backup = run_playbook("playbooks/backup.yml")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    sql(host, "UPDATE restore_probe SET v = 'after-backup'")
    return backup


def test_backup_playbook_reports_the_new_dump(backed_up_marker):
    assert "Backup done on db1" in backed_up_marker.stdout
    assert "/var/lib/postgresql-backups/schema_registry-" in backed_up_marker.stdout


def test_restore_without_confirmation_changes_nothing(host, run_playbook, backed_up_marker):
    result = run_playbook("playbooks/restore.yml")
    assert result.returncode != 0
    assert "Database to overwrite: schema_registry" in result.stdout
    assert "confirm_restore=yes" in result.stdout
    assert sql(host, "SELECT v FROM restore_probe") == "after-backup"


def test_restore_refuses_an_unknown_dump(host, run_playbook, backed_up_marker):
    result = run_playbook(
        "playbooks/restore.yml", "-e", "restore_file=nope.dump", "-e", "confirm_restore=yes"
    )
    assert result.returncode != 0
    assert "No dump 'nope.dump'" in result.stdout
    assert sql(host, "SELECT v FROM restore_probe") == "after-backup"


def test_confirmed_restore_brings_the_backed_up_data_back(
    host, run_playbook, backed_up_marker, secrets
):
    # Cached schemas from before the restore, as the registry would have left them.
    cached = ["schema:molecule-stale-1", "schema:molecule-stale-2"]
    password = secrets["redis_registry_password"]
    cli = f"REDISCLI_AUTH={password} llmops-redis-cli --no-auth-warning --user registry"
    for key in cached:
        assert host.run(f"{cli} SET {key} stale").stdout.strip() == "OK"
    result = run_playbook("playbooks/restore.yml", "-e", "confirm_restore=yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sql(host, "SELECT v FROM restore_probe") == "before-backup"
    # The restore emptied the cache (on the master: db1's Redis), so nothing stale is served.
    assert host.run(f"{cli} EXISTS {' '.join(cached)}").stdout.strip() == "0"
    dropped = re.search(r"Cache: (\d+) cached schemas dropped on db1", result.stdout)
    assert dropped and int(dropped.group(1)) >= len(cached), result.stdout
    assert secrets["redis_registry_password"] not in result.stdout
    with host.sudo("postgres"):
        kept = host.check_output(
            "psql -tAc %s",
            "SELECT count(*) FROM pg_database WHERE datname = 'schema_registry__pre_restore'",
        )
    assert kept == "1"


def test_registry_host_still_logs_in_after_a_restore(lab_host, addresses, secrets):
    # Runs after the restore above (pytest keeps file order).
    login = lab_host("app1").run(
        "PGPASSWORD=%s psql -h %s -U schema_registry -d schema_registry -tAc %s",
        secrets["postgresql_registry_password"],
        addresses["db1"],
        "SELECT v FROM restore_probe",
    )
    assert login.stdout.strip() == "before-backup", login.stderr
