"""Nightly backup: the timer is armed and a triggered run leaves a dump and the metric."""

from __future__ import annotations

import time

testinfra_hosts = ["db1"]

BACKUP_DIR = "/var/lib/postgresql-backups"
TIMER = "llmops-postgresql-backup.timer"
AS_POSTGRES = "setpriv --reuid=postgres --regid=postgres --init-groups"
METRIC = 'postgresql_backup_last_success_timestamp_seconds{database="schema_registry"}'
METRIC_FILE = "/var/lib/node_exporter/textfile/postgresql_backup.prom"


def test_backup_timer_is_enabled_and_scheduled(host):
    timer = host.service(TIMER)
    assert timer.is_enabled
    assert timer.is_running
    next_run = host.check_output("systemctl show -p NextElapseUSecRealtime " + TIMER)
    assert next_run.split("=", 1)[1].strip()


def test_triggered_backup_writes_a_dump_and_the_metric(host):
    started = time.time()
    with host.sudo():
        host.check_output("systemctl start llmops-postgresql-backup.service")
        newest = host.check_output(f"ls -1t {BACKUP_DIR}/schema_registry-*.dump | head -1")
        toc = host.run(f"{AS_POSTGRES} pg_restore --list {newest}")
        metric = host.file(METRIC_FILE).content_string
    assert toc.rc == 0, toc.stderr
    assert "Format: CUSTOM" in toc.stdout
    lines = [line for line in metric.splitlines() if line.startswith(METRIC)]
    assert len(lines) == 1, metric
    # The build machine and the lab share one clock.
    assert float(lines[0].split()[-1]) >= started - 5


def test_backup_folder_is_private_to_postgres(host):
    folder = host.file(BACKUP_DIR)
    assert folder.user == "postgres"
    assert folder.mode == 0o700
