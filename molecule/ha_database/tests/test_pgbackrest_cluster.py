"""pgBackRest on the Patroni cluster: WAL archiving and replica creation through Patroni's
DCS configuration, backups from whichever member is the primary (also after a
switchover), replicas re-initialised from the repository, and the whole cluster restored to a
point in time by restore.yml."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from lab_http import lab_tls_context  # molecule/shared, on the path by conftest.py

testinfra_hosts = ["backup1"]

WORK = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "ha"
GROWN = str(Path(__file__).resolve().parents[1] / "inventory" / "grown.yml")
MEMBERS = ["db1", "db2", "db3"]
READY = "/var/lib/postgresql/15/main/pg_wal/archive_status"
CONFIRM = "confirm_restore=yes"


def api(address: str, path: str) -> dict:
    """Patroni's REST API from the controller: HTTPS, checked against the internal CA."""
    url = f"https://{address}:8008{path}"
    with urllib.request.urlopen(url, timeout=5, context=lab_tls_context()) as response:
        return json.loads(response.read().decode())


def members(addresses) -> dict[str, dict]:
    return {m["name"]: m for m in api(addresses["db1"], "/cluster")["members"]}


def leader(addresses) -> str:
    return next(n for n, m in members(addresses).items() if m["role"] == "leader")


def sql(db_host, query: str) -> str:
    return db_host.check_output(f"sudo -u postgres psql -qtAX -d schema_registry -c {query!r}")


def pgbackrest(host, args: str):
    return host.run(f"sudo -u pgbackrest pgbackrest --stanza=registry {args}")


def info(host) -> dict:
    return json.loads(pgbackrest(host, "--output=json info").stdout)[0]


def test_archiving_and_replica_creation_are_in_patronis_dcs_configuration(lab_host, addresses):
    config = api(addresses["db1"], "/config")["postgresql"]
    assert config["parameters"]["archive_mode"] == "on"
    assert config["parameters"]["archive_command"] == "pgbackrest --stanza=registry archive-push %p"
    assert int(config["parameters"]["archive_timeout"]) == 60
    assert "archive-get" in config["recovery_conf"]["restore_command"]
    # The reinit benchmark of side_effect put the methods back as they were.
    assert config["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert config["pgbackrest"]["keep_data"] is True
    for name in MEMBERS:
        db = lab_host(name)
        assert sql(db, "SHOW archive_mode").strip() == "on", name
        # The single server's conf.d file (db1 before the growth) is gone: one source.
        gone = db.run("sudo test -e /etc/postgresql/15/main/conf.d/60-pgbackrest.conf")
        assert gone.rc == 1, name


def test_check_passes_and_archiving_keeps_up_on_the_primary(host, lab_host, addresses):
    run = pgbackrest(host, "check")
    assert run.rc == 0, run.stderr
    primary = lab_host(leader(addresses))
    ready = primary.check_output(f"sudo find {READY} -name '*.ready' | wc -l")
    assert int(ready) <= 1
    age = sql(
        primary, "SELECT extract(epoch FROM now() - last_archived_time)::int FROM pg_stat_archiver"
    )
    assert int(age) < 120  # check switched a segment and saw it archived just now


def test_a_full_backup_is_taken_from_the_cluster(host):
    started = time.time()
    run = host.run("systemctl start llmops-pgbackrest@full.service")
    assert run.rc == 0, run.stderr
    newest = info(host)["backup"][-1]
    assert newest["type"] == "full"
    assert newest["timestamp"]["stop"] >= int(started)
    print(f"full backup from the cluster: {time.time() - started:.1f} s")


def test_after_a_switchover_archiving_and_backups_go_on_from_the_new_primary(
    host, lab_host, addresses, playbooks
):
    before = leader(addresses)
    switched = time.time()
    run = playbooks.run("-i", GROWN, "playbooks/db_switchover.yml")
    assert run.returncode == 0, run.stdout[-2000:]
    after = leader(addresses)
    assert after != before
    check = pgbackrest(host, "check")
    assert check.rc == 0, check.stderr
    # The segment check switched on the new primary is in the repository.
    timeline = sql(lab_host(after), "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")
    assert info(host)["archive"][0]["max"][:8] == timeline.strip()
    # The backup timer's job finds the new primary by itself (pg1..pg3 in the stanza).
    backup = host.run("systemctl start llmops-pgbackrest@incr.service")
    assert backup.rc == 0, backup.stderr
    newest = info(host)["backup"][-1]
    assert newest["type"] == "incr"
    assert newest["timestamp"]["start"] >= int(switched)


def test_a_reinitialised_replica_is_restored_from_the_repository(lab_host, addresses):
    name = next(n for n, m in members(addresses).items() if m["role"] != "leader")
    db = lab_host(name)
    since = int(db.check_output("date +%s")) - 1
    started = time.time()
    db.check_output(f"sudo patronictl -c /etc/patroni/config.yml reinit registry {name} --force")
    deadline = time.time() + 300
    while time.time() < deadline:
        log = db.check_output(f"sudo journalctl -u patroni --since @{since} --no-pager -o cat")
        member = members(addresses).get(name, {})
        made = "replica has been created" in log
        # Patroni's member key can still say running from before the reinit for a loop:
        # wait until PostgreSQL itself takes connections (not "starting up") too.
        settled = member.get("state") in ("running", "streaming") and member.get("lag") == 0
        if made and settled and "timeline" in member and db.run("pg_isready -q").rc == 0:
            break
        time.sleep(1)
    assert "replica has been created using pgbackrest" in log, log[-3000:]
    assert members(addresses)[name]["lag"] == 0
    restored = db.check_output("sudo stat -c %Y /var/log/pgbackrest/registry-restore.log")
    assert int(restored) >= since
    assert sql(db, "SELECT count(*) FROM growth_rows").strip() == "5000"
    print(f"{name} re-initialised from the repository in {time.time() - started:.1f} s")


def test_the_benchmark_made_one_replica_from_the_repository_and_one_by_basebackup():
    bench = json.loads((WORK / "reinit.json").read_text())
    used = {run["methods"][0]: run["created_using"] for run in bench["reinit"]}
    assert used == {"pgbackrest": "pgbackrest", "basebackup": "basebackup"}
    assert all(int(run["rows"]) == bench["fill_rows"] for run in bench["reinit"])
    assert bench["full_backup"]["type"] == "full"


def test_restore_without_confirmation_shows_the_cluster_plan_and_changes_nothing(
    playbooks, addresses
):
    before = members(addresses)
    run = playbooks.run("-i", GROWN, "playbooks/restore.yml")
    assert run.returncode != 0
    output = " ".join((run.stdout + run.stderr).split())
    assert "Would restore db1" in output
    assert "founds the cluster again from the restored data" in output
    assert "Add -e confirm_restore=yes to restore. Nothing was changed." in output
    after = members(addresses)
    assert {n: (m["role"], m["timeline"]) for n, m in after.items()} == {
        n: (m["role"], m["timeline"]) for n, m in before.items()
    }


def test_a_cluster_restore_to_a_time_in_the_future_is_refused(playbooks, addresses):
    before = members(addresses)
    future = "restore_target_time=2099-01-01T00:00:00+00:00"
    run = playbooks.run("-i", GROWN, "playbooks/restore.yml", "-e", future, "-e", CONFIRM)
    assert run.returncode != 0
    assert "outside what the repository can restore" in " ".join((run.stdout + run.stderr).split())
    states = {n: m["state"] for n, m in members(addresses).items()}
    assert states == {n: m["state"] for n, m in before.items()}


def _archived(db, segment: str) -> bool:
    archived = sql(db, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    return archived.strip() >= segment


def test_a_point_in_time_restore_of_the_cluster_keeps_every_row_before_the_target_and_none_after(
    host, lab_host, addresses, playbooks
):
    """Destructive, so the last test: rows acknowledged before T and after T, restore.yml to T
    onto the cluster, then the rows, the members, the new timeline and the registry."""
    before = members(addresses)
    primary = lab_host(leader(addresses))
    sql(primary, "DROP TABLE IF EXISTS pitr_rows")
    sql(primary, "CREATE TABLE pitr_rows (id int PRIMARY KEY, batch int NOT NULL)")
    sql(primary, "INSERT INTO pitr_rows SELECT g, 1 FROM generate_series(1, 500) g")
    target = datetime.fromtimestamp(
        float(sql(primary, "SELECT extract(epoch FROM clock_timestamp())")), tz=UTC
    ).isoformat(timespec="milliseconds")
    time.sleep(2)
    sql(primary, "INSERT INTO pitr_rows SELECT g, 2 FROM generate_series(501, 800) g")
    segment = sql(primary, "SELECT pg_walfile_name(pg_switch_wal())").strip()
    deadline = time.time() + 120
    while not _archived(primary, segment) and time.time() < deadline:
        time.sleep(1)
    assert _archived(primary, segment), f"{segment} was not archived"

    since = int(host.check_output("date +%s")) - 1
    started = time.time()
    to_target = f"restore_target_time={target}"
    run = playbooks.run("-i", GROWN, "playbooks/restore.yml", "-e", to_target, "-e", CONFIRM)
    took = time.time() - started
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]

    after = members(addresses)
    assert after["db1"]["role"] == "leader"
    assert sorted(after) == MEMBERS
    assert all(m["state"] in ("running", "streaming") for m in after.values()), after
    assert all(m.get("lag") == 0 for n, m in after.items() if m["role"] != "leader"), after
    assert after["db1"]["timeline"] > max(m["timeline"] for m in before.values())
    for name in MEMBERS:
        db = lab_host(name)
        batches = sql(db, "SELECT count(*) FILTER (WHERE batch = 1), count(*) - 500 FROM pitr_rows")
        assert batches.strip() == "500|0", name
        assert sql(db, "SELECT count(*) FROM growth_rows").strip() == "5000", name
    for name in ("db2", "db3"):
        journal = f"sudo journalctl -u patroni --since @{since} --no-pager -o cat"
        log = lab_host(name).check_output(journal)
        assert "replica has been created using pgbackrest" in log, log[-3000:]
    # The DCS configuration survived: the restored cluster archives and backs up as before.
    assert api(addresses["db1"], "/config")["postgresql"]["parameters"]["archive_mode"] == "on"
    assert pgbackrest(host, "check").rc == 0
    assert info(host)["backup"][-1]["type"] == "full"
    ready = lab_host("registry1").run(
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/ready"
    )
    assert ready.stdout == "200"
    timeline = after["db1"]["timeline"]
    print(f"cluster restored to {target} in {took:.1f} s (3 members, new timeline {timeline})")
