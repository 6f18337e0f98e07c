"""The operator's daily loop on a deployed stack: backup, status, restore, and what
they print (issues 18, 15).

- status.yml answers per host what it serves, version, ready, disk of /, last backup;
- a restore leaves no stale schema in the cache: 0 stale reads through the lb;
- no secret of the inventory appears in the output of deploy.yml (a no-op re-run),
  backup.yml, status.yml and restore.yml at -vvv --diff, nor in any host's journal.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from lab_http import http_json
from lab_inventory import host_vars, hosts, node

from playbooks import Playbooks

VERBOSE = ("-vvv", "--diff")
# Every verbose run's output, for the secret check at the end of this module.
OUTPUTS: dict[str, str] = {}


def _run(name: str, playbook: str, *args: str, json_report: bool = False) -> str:
    proc = Playbooks().run(f"playbooks/{playbook}", *VERBOSE, *args, json_report=json_report)
    output = proc.stdout + proc.stderr
    OUTPUTS[name] = output
    assert proc.returncode == 0, output[-4000:]
    return proc.stdout


def _lb_url() -> str:
    return f"https://{host_vars(hosts('lb')[0])['ansible_host']}:8443"


def _api_key() -> str:
    return host_vars(hosts("registry")[0])["vault_registry_api_keys"][0]["key"]


def _register(subject: str) -> str:
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}}}
    status, created = http_json(
        "POST",
        f"{_lb_url()}/api/v1/schemas",
        {"subject": subject, "schema": schema, "schema_type": "JSON"},
        key=_api_key(),
    )
    assert status == 201, created
    return created["id"]


def _status_of(host: str, reports: dict) -> str:
    """status.yml's report of one host, as YAML text (one key or list item a line)."""
    assert host in reports, f"no report for {host}: {sorted(reports)}"
    return yaml.safe_dump(reports[host], width=1000, sort_keys=True)


@pytest.fixture(scope="module")
def status_after_backup() -> dict:
    """host -> status.yml's report (its JSON callback report: the same at any verbosity)."""
    _run("backup", "backup.yml")
    stdout = _run("status", "status.yml", json_report=True)
    # -vvv prints its own lines before the callback's JSON document.
    start = 0 if stdout.startswith("{") else stdout.index("\n{\n") + 1
    report = json.loads(stdout[start:])
    return {
        host: result["msg"]
        for play in report["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Report"
        for host, result in task["hosts"].items()
    }


def test_status_shows_the_backup_just_taken(status_after_backup):
    for host in hosts("db"):
        report = _status_of(host, status_after_backup)
        assert "last_backup: never" not in report
        when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(0\.\d h ago\)"
        assert re.search(rf"schema_registry: {when}", report), report
        assert re.search(r"postgresql :5432 version \d+\.\d+.* ready", report), report


def test_status_shows_what_each_host_serves(status_after_backup):
    version = host_vars(hosts("registry")[0])["schema_registry_version"]
    for host in hosts("registry"):
        report = _status_of(host, status_after_backup)
        for name, port in (("a", 8081), ("b", 8082)):
            assert f"registry instance {name} :{port} version {version} ready" in report, report
        assert f"release_active: {version}" in report
    for host in hosts("cache"):
        assert re.search(r"redis :6379 version 7\.\S+ ready", _status_of(host, status_after_backup))
    servers = 2 * len(hosts("registry"))
    for host in hosts("lb"):
        report = _status_of(host, status_after_backup)
        assert f"backend servers UP {servers}/{servers}" in report, report


def test_status_shows_the_disk_of_root_only(status_after_backup):
    for host in hosts("all"):
        report = _status_of(host, status_after_backup)
        line = r"^disk_root: ([\d.]+)% used, ([\d.]+) GiB free$"
        disk = re.findall(line, report, re.MULTILINE)
        assert len(disk) == 1, report
        free = node(host).run("df --block-size=1 --output=avail /").stdout.split()[-1]
        assert abs(float(disk[0][1]) - int(free) / 1024**3) < 1.0
        # Not the lab's bind mounts (the old report listed every mount).
        assert "/etc/resolv.conf" not in report and "/var/cache/apt" not in report


def test_a_restore_leaves_no_stale_schema_in_the_cache():
    kept = _register(f"molecule.restore.kept_{uuid.uuid4().hex[:8]}")
    _run("backup_before_restore", "backup.yml")
    time.sleep(1.1)  # the next dump must be newer, and the newest is restored
    gone = _register(f"molecule.restore.gone_{uuid.uuid4().hex[:8]}")
    for _unused in range(4):  # every instance behind the lb reads it, so Redis holds it
        assert http_json("GET", f"{_lb_url()}/api/v1/schemas/{gone}")[0] == 200

    _run("restore", "restore.yml", "-e", "confirm_restore=yes")

    deadline = time.monotonic() + 60
    while http_json("GET", f"{_lb_url()}/api/v1/schemas/{kept}")[0] != 200:
        assert time.monotonic() < deadline, "the restored schema is not served"
        time.sleep(1)
    reads = [http_json("GET", f"{_lb_url()}/api/v1/schemas/{gone}")[0] for _unused in range(40)]
    assert reads.count(200) == 0, f"stale reads after the restore: {reads}"
    assert set(reads) == {404}, reads
    validated = http_json("POST", f"{_lb_url()}/api/v1/validate/{gone}", {"prompt": "x"})
    assert validated[0] == 404, validated


def _secrets() -> dict[str, str]:
    """name -> value of every secret the inventory holds (vault_*)."""
    found = {}
    for name, value in host_vars(hosts("all")[0]).items():
        if not name.startswith("vault_"):
            continue
        if isinstance(value, str):
            found[name] = value
        elif isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    found[f"{name}[{entry.get('name')}]"] = entry["key"]
    assert len(found) >= 5, found
    return found


def test_no_secret_in_any_output_or_journal():
    # A no-op re-run is enough: the leaks were in checks that run on every deploy.
    _run("deploy", "deploy.yml")
    assert {"backup", "status", "deploy"} <= set(OUTPUTS), sorted(OUTPUTS)
    secrets = _secrets()
    leaks = [
        f"{secret} in the output of {run}"
        for run, output in OUTPUTS.items()
        for secret, value in secrets.items()
        if value in output
    ]
    for host in hosts("all"):
        journal = node(host).check_output("journalctl --no-pager --output=cat | cat")
        assert len(journal) > 1000
        leaks += [f"{secret} in {host}'s journal" for secret, v in secrets.items() if v in journal]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
