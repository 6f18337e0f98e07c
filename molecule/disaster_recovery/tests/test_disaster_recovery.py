"""Disaster recovery drills: db1's data folder is destroyed under continuous writes and
restored from the pgBackRest repository on backup1, to a point in time and to the end
of the archive. Rows are counted against what the writer saw acknowledged."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from lab_http import http_json

testinfra_hosts = ["db1"]

WRITER = r"""
import sys, time, os, psycopg2
log, seconds = sys.argv[1], float(sys.argv[2])
conn = psycopg2.connect(dbname="schema_registry")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT coalesce(max(i), 0) FROM dr_drill")
i = cur.fetchone()[0]
end = time.time() + seconds
INSERT = "INSERT INTO dr_drill VALUES (%s, extract(epoch FROM clock_timestamp())) RETURNING stmt_ts"
with open(log, "a") as out:
    while time.time() < end and not os.path.exists(log + ".stop"):
        i += 1
        try:
            cur.execute(INSERT, (i,))
            stmt_ts = cur.fetchone()[0]
        except psycopg2.Error:
            break  # the database is gone: nothing more is acknowledged
        out.write(f"{i} {stmt_ts} {time.time()}\n")  # acknowledged: committed (autocommit)
        out.flush()
        time.sleep(0.05)
"""
PG_DATA = "/var/lib/postgresql/15/main"
DRILL_DIR = "/var/lib/postgresql"  # the writer runs as postgres
PG_UNIT = "postgresql@15-main"
WRONG_KEY = "a-wrong-key-of-enough-length"


def sql(host, query: str, database: str = "schema_registry") -> str:
    with host.sudo("postgres"):
        return host.check_output("psql -XAtd %s -c %s", database, query)


def postgres_started(host) -> str:
    return host.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value %s", PG_UNIT)


def acknowledged(host, log: str) -> list[tuple[int, float, float]]:
    rows = host.file(log).content_string.split("\n")
    return [(int(i), float(s), float(a)) for i, s, a in (line.split() for line in rows if line)]


def present(host) -> set[int]:
    return {int(i) for i in sql(host, "SELECT i FROM dr_drill").split()}


def write_for(host, log: str, seconds: float) -> None:
    """Start the writer on the database host, in the background, with a fresh log."""
    with host.sudo("postgres"):
        host.check_output(f"rm -f {log} {log}.stop")
        host.check_output(
            f"nohup python3 {DRILL_DIR}/dr_writer.py {log} {seconds} >/dev/null 2>&1 &"
        )


def gone(host, pgrep: str, seconds: float) -> bool:
    """True once the pgrep command finds nothing (within seconds)."""
    deadline = time.monotonic() + seconds
    while host.run(pgrep).rc == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_writer(host, log: str) -> None:
    with host.sudo("postgres"):
        host.check_output(f"touch {log}.stop")
    if not gone(host, "pgrep -f dr_writer.py", seconds=20):
        pytest.fail("the writer did not stop")


def destroy_database(host) -> float:
    """Kill PostgreSQL without a shutdown and delete its data folder: a lost disk."""
    # The postmaster itself, not `systemctl kill`: the lab cannot always signal a whole
    # control group (lab/README.md); its backends exit when they see it gone.
    host.check_output(f"sudo sh -c 'kill -KILL $(head -1 {PG_DATA}/postmaster.pid)'")
    if not gone(host, "pgrep -u postgres -x postgres", seconds=10):
        host.run("sudo pkill -KILL -u postgres -x postgres")
    host.check_output(f"sudo rm -rf {PG_DATA}")
    return float(host.check_output("date +%s.%N"))


@pytest.fixture(scope="module")
def registry(addresses, group_vars) -> tuple[str, str]:
    """The registry's URL behind HAProxy and an API key that may write."""
    return f"https://{addresses['app1']}:8443", group_vars["vault_registry_api_keys"][0]["key"]


def registry_writable(registry: tuple[str, str]) -> None:
    """The registry behind HAProxy takes a new schema (so it is ready and writable)."""
    deadline = time.monotonic() + 120
    last = None
    while time.monotonic() < deadline:
        try:
            status, body = http_json(
                "POST",
                f"{registry[0]}/api/v1/schemas",
                {
                    "subject": f"dr.drill.s{time.time_ns()}",
                    "schema_type": "JSON",
                    "schema": {"type": "object"},
                },
                key=registry[1],
            )
            if status == 201:
                return
            last = f"{status} {str(body)[:200]}"
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(1)
    pytest.fail(f"the registry did not take a write after the restore: {last}")


def register_schema(registry: tuple[str, str], marker: str) -> int:
    """A schema whose body carries the marker (ids may be handed out again after a
    restore: a read is stale when it still returns this body)."""
    schema = {"type": "object", "title": marker}
    status, body = http_json(
        "POST",
        f"{registry[0]}/api/v1/schemas",
        {"subject": marker, "schema_type": "JSON", "schema": schema},
        key=registry[1],
    )
    assert status == 201, body
    return body["id"]


def serves_marker(registry: tuple[str, str], schema_id: int, marker: str) -> bool:
    status, body = http_json("GET", f"{registry[0]}/api/v1/schemas/{schema_id}")
    return status == 200 and marker in json.dumps(body)


@pytest.fixture(scope="module")
def drill_table(host):
    sql(host, "CREATE TABLE IF NOT EXISTS dr_drill (i int PRIMARY KEY, stmt_ts double precision)")
    with host.sudo("postgres"):
        host.check_output(f"cat > {DRILL_DIR}/dr_writer.py <<'EOF'\n" + WRITER + "\nEOF")
    return "dr_drill"


def repo_info(lab_host) -> dict:
    backup = lab_host("backup1")
    with backup.sudo("pgbackrest"):
        return json.loads(backup.check_output("pgbackrest --stanza=registry --output=json info"))[0]


def test_the_repository_is_encrypted_and_holds_a_full_backup(lab_host):
    info = repo_info(lab_host)
    assert info["status"]["code"] == 0, info["status"]
    assert info["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in info["backup"]][:1] == ["full"]
    # The repository lives on backup1 only: nothing of it on the database host.
    assert not lab_host("db1").file("/var/lib/pgbackrest/backup").exists


def test_check_proves_archiving_and_records_its_metric(lab_host):
    backup = lab_host("backup1")
    backup.check_output("sudo systemctl start llmops-pgbackrest@check.service")
    metrics = backup.file(
        "/var/lib/node_exporter/textfile/pgbackrest_job_check.prom"
    ).content_string
    assert 'pgbackrest_job_last_run_success{stanza="registry",job="check"} 1' in metrics
    info = backup.file("/var/lib/node_exporter/textfile/pgbackrest_info.prom").content_string
    assert 'pgbackrest_backups{stanza="registry",type="full"} 1' in info


def test_backup_copies_the_new_dump_to_the_backup_host(playbooks, lab_host):
    run = playbooks.run("playbooks/backup.yml")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    db, backup = lab_host("db1"), lab_host("backup1")
    newest = db.check_output(
        "sudo find /var/lib/postgresql-backups -name 'schema_registry-*.dump' -printf '%T@ %f\\n'"
        " | sort -rn | head -1 | cut -d' ' -f2"
    )
    assert newest, "backup.yml left no dump on db1"
    copy = f"/var/lib/pgbackrest-dumps/{newest}"
    original = db.check_output("sudo sha256sum /var/lib/postgresql-backups/%s", newest).split()[0]
    assert backup.check_output("sudo sha256sum %s", copy).split()[0] == original
    assert backup.check_output("sudo stat -c '%%U %%a' %s", copy) == "pgbackrest 600"
    metrics = backup.file(
        "/var/lib/node_exporter/textfile/pgbackrest_dump_copy.prom"
    ).content_string
    assert 'pgbackrest_dump_copies{stanza="registry",database="schema_registry"}' in metrics
    # A second run finds nothing new to copy, and the job records its success.
    again = backup.run("sudo /usr/local/sbin/llmops-pgbackrest dump-copy")
    assert again.rc == 0, again.stderr
    assert "-> " not in again.stdout
    job = backup.file("/var/lib/node_exporter/textfile/pgbackrest_job_dump-copy.prom")
    assert 'pgbackrest_job_last_run_success{stanza="registry",job="dump-copy"} 1' in (
        job.content_string
    )


def test_status_shows_the_backups_the_jobs_and_the_archive_lag(playbooks):
    run = playbooks.run("playbooks/status.yml", json_report=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    reports = {
        host: result["msg"]
        for play in playbooks.report(run)["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Report"
        for host, result in task["hosts"].items()
    }
    lines = reports["backup1"]["pgbackrest"]
    full = next(line for line in lines if line.startswith("last full backup: "))
    assert full.startswith(f"last full backup: {datetime.now(UTC):%Y-}"), lines
    assert any(line.startswith("last check: ok, ") for line in lines), lines
    assert any(line.startswith("last dump-copy: ok, ") for line in lines), lines
    assert any(line.startswith("newest pg_dump of schema_registry here: 20") for line in lines), (
        lines
    )
    archiving = reports["db1"]["wal_archiving"]
    assert archiving.startswith("last segment archived 20"), archiving
    assert "waiting (archive lag)" in archiving
    assert "pgbackrest" not in reports["db1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-e", '{"restore_target_time": "2000-01-01 00:00:00+00"}'], "after the end of the first"),
        (["-e", "restore_target_time=2999-01-01T00:00:00+00:00"], "not in the future"),
        (["-e", "restore_target_time=yesterday"], "is not valid"),
        (["-e", "restore_point=never-made"], "No restore point 'never-made'"),
        (["-e", "pgbackrest_stanza=nosuch"], "missing stanza"),
        (["-e", f"vault_pgbackrest_cipher_pass={WRONG_KEY}"], "cannot be restored from"),
    ],
    ids=["before-first", "future", "malformed", "unknown-point", "missing-stanza", "wrong-key"],
)
def test_bad_restore_input_is_refused_and_changes_nothing(
    host, playbooks, drill_table, extra, message
):
    started = postgres_started(host)
    sql(host, "INSERT INTO dr_drill VALUES (-1, 0) ON CONFLICT DO NOTHING")
    result = playbooks.run("playbooks/restore.yml", "-e", "confirm_restore=yes", *extra)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-2000:]
    assert message in output, output[-2000:]
    assert "Nothing was changed" in output
    assert postgres_started(host) == started
    assert "-1" in sql(host, "SELECT i FROM dr_drill WHERE i = -1")


def test_restore_to_a_point_in_time_keeps_exactly_what_was_acknowledged_before_it(
    host, lab_host, playbooks, drill_table, registry
):
    log = f"{DRILL_DIR}/dr_pitr.log"
    write_for(host, log, 40)
    time.sleep(8)
    target = float(host.check_output("date +%s.%N"))
    time.sleep(1)
    # A schema registered after the target, read until Redis and the workers hold it.
    marker = f"dr.after.target.s{time.time_ns()}"
    newer = register_schema(registry, marker)
    assert all(serves_marker(registry, newer, marker) for _unused in range(8))
    time.sleep(5)
    stop_writer(host, log)
    rows = acknowledged(host, log)
    before = {i for i, _unused, ack in rows if ack < target}
    after = {i for i, stmt, _unused in rows if stmt > target}
    assert len(before) > 20 and len(after) > 20, (len(before), len(after))
    # Every acknowledged row reaches the repository before the disk goes.
    lab_host("backup1").check_output("sudo systemctl start llmops-pgbackrest@check.service")
    destroy_database(host)

    # pgBackRest takes milliseconds at most: round the target down, never up.
    target = int(target * 1000) / 1000
    target_text = (
        datetime.fromtimestamp(target, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"
    )
    started = time.monotonic()
    result = playbooks.run(
        "playbooks/restore.yml",
        "-e",
        f"restore_target_time={target_text}",
        "-e",
        "confirm_restore=yes",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    registry_writable(registry)
    print(
        f"point-in-time restore: {len(before)} rows before the target, {len(after)} after;"
        f" restore.yml to a writable registry in {time.monotonic() - started:.1f} s"
    )

    restored = present(host)
    assert before - restored == set(), f"lost acknowledged rows: {sorted(before - restored)[:20]}"
    came_back = sorted(after & restored)
    assert came_back == [], f"rows after the target came back: {came_back[:20]}"
    # restore.yml emptied the cache too (issue 18): 0 stale reads of the newer schema.
    stale = sum(serves_marker(registry, newer, marker) for _unused in range(40))
    assert stale == 0, f"{stale} of 40 reads served the schema the restore removed"


def test_latest_restore_after_a_sudden_loss_loses_at_most_the_archive_timeout(
    host, playbooks, drill_table, registry
):
    log = f"{DRILL_DIR}/dr_latest.log"
    write_for(host, log, 60)
    time.sleep(20)
    crashed_at = destroy_database(host)
    stop_writer(host, log)
    rows = acknowledged(host, log)
    assert len(rows) > 50, len(rows)

    started = time.monotonic()
    result = playbooks.run("playbooks/restore.yml", "-e", "confirm_restore=yes")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    registry_writable(registry)
    rto = time.monotonic() - started

    restored = present(host)
    lost = [(i, ack) for i, _unused, ack in rows if i not in restored]
    window = crashed_at - min((ack for _unused, ack in lost), default=crashed_at)
    print(
        f"latest restore after a sudden loss: {len(lost)} of {len(rows)} acknowledged rows lost,"
        f" from the last {window:.1f} s before the loss (archive_timeout 60 s); RTO {rto:.1f} s"
    )
    # Only the tail that archive_timeout allows may be missing, never a row in the middle.
    assert window <= 60 + 15, lost[:10]
    kept = sorted(i for i, _stmt, _ack in rows if i in restored)
    in_order = sorted(i for i, _stmt, _ack in rows)
    assert kept == in_order[: len(kept)], "a gap: rows lost before later ones survived"
