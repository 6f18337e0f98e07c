"""rollback.yml with the database restore, against the lab's real PostgreSQL and Redis.

Runs after the release story (the lab is on 1.0.0): back up, register a schema, then
  1. ask for the restore without the confirmation: refused, nothing changes;
  2. roll back with the restore confirmed: the schema registered after the backup is
     gone (database and cache), the one registered before it is still there, and the
     service is ready on the restored database.
"""

from __future__ import annotations

import json
import uuid

import pytest

# Plays run from the controller; lb1 (one host) runs them once and has curl.
testinfra_hosts = ["lb1"]

API_KEY = "molecule-rel-api-key-0123456789abcdef"
# https on lb1's own name (in its certificate), connected on loopback.
LB = "https://lb1:8443"
CURL = "curl --cacert /etc/llmops/tls/ca.crt --resolve lb1:8443:127.0.0.1"
CONFIRM = "rollback_restore_confirm=yes-destroy-newer-data"


def register(host, label: str) -> str:
    body = json.dumps(
        {
            "subject": f"verify.restore.{label}{uuid.uuid4().hex[:10]}",
            "schema_type": "JSON",
            "schema": {"type": "object"},
        }
    )
    out = host.check_output(
        f"{CURL} -fsS -X POST -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer {API_KEY}' -d '{body}' {LB}/api/v1/schemas"
    )
    return json.loads(out)["id"]


def status_of(host, path: str) -> int:
    return int(host.check_output(f"{CURL} -sS -o /dev/null -w '%{{http_code}}' {LB}{path}"))


def failed_messages(report: dict) -> list[str]:
    return [
        result.get("msg", "")
        for play in report.get("plays", [])
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]


@pytest.fixture(scope="module")
def story(host, playbooks):
    before = register(host, "before")
    backup = playbooks.run("playbooks/backup.yml")
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-3000:]
    after = register(host, "after")
    # Read through every instance, so Redis and the workers hold it when the restore happens.
    assert [status_of(host, f"/api/v1/schemas/{after}") for _unused in range(8)] == [200] * 8
    refused = playbooks.run(
        "playbooks/rollback.yml",
        "-e",
        "version=1.0.0",
        "-e",
        "rollback_restore_database=true",
        json_report=True,
    )
    after_status_when_refused = status_of(host, f"/api/v1/schemas/{after}")
    restored = playbooks.run(
        "playbooks/rollback.yml",
        "-e",
        "version=1.0.0",
        "-e",
        "rollback_restore_database=true",
        "-e",
        CONFIRM,
        json_report=True,
    )
    return {
        "before": before,
        "after": after,
        "refused": refused,
        "refused_report": playbooks.report(refused),
        "after_status_when_refused": after_status_when_refused,
        "restored": restored,
        "restored_report": playbooks.report(restored),
    }


def test_restore_without_the_confirmation_fails_naming_the_variable(story):
    assert story["refused"].returncode != 0
    messages = failed_messages(story["refused_report"])
    assert any("rollback_restore_confirm" in msg for msg in messages), messages


def test_restore_without_the_confirmation_changes_nothing(story, playbooks):
    assert playbooks.changed_tasks(story["refused_report"]) == []
    # Only the refusal ran: no host was even asked for facts.
    tasks = [t["task"]["name"] for p in story["refused_report"]["plays"] for t in p["tasks"]]
    assert tasks == ["Refuse a database restore without the confirmation"], tasks
    assert story["after_status_when_refused"] == 200


def test_confirmed_restore_succeeds(story):
    proc = story["restored"]
    assert proc.returncode == 0, failed_messages(story["restored_report"]) or proc.stderr[-3000:]


def test_schema_registered_after_the_backup_is_gone(story, host):
    # Enough reads to reach every instance and worker behind the lb (each may have held
    # it in Redis or its memory tier): 0 stale reads after a rollback with restore.
    reads = [status_of(host, f"/api/v1/schemas/{story['after']}") for _unused in range(40)]
    assert reads.count(200) == 0, f"stale reads after the rollback with restore: {reads}"
    assert set(reads) == {404}, reads
    body = json.dumps({"prompt": "x"})
    validated = host.run(
        f"{CURL} -sS -o /dev/null -w '%{{http_code}}' -X POST -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer {API_KEY}' -d '{body}' {LB}/api/v1/validate/{story['after']}"
    )
    assert validated.stdout.strip() == "404", validated.stdout + validated.stderr


def test_schema_registered_before_the_backup_is_still_there(story, host):
    assert status_of(host, f"/api/v1/schemas/{story['before']}") == 200


def test_service_is_ready_and_writable_on_the_restored_database(story, host):
    assert status_of(host, "/ready") == 200
    assert register(host, "restored")
