"""status.yml on this scenario's layout, where the database, the cache and each load
balancer are hosts of their own (issue 18: every playbook on every layout the README
allows). Runs after test_rollback_restore, whose backup.yml is the last backup."""

from __future__ import annotations

import re

import pytest

# Plays run from the controller; lb1 (one host) only makes the tests run once.
testinfra_hosts = ["lb1"]


@pytest.fixture(scope="module")
def reports(playbooks) -> dict:
    run = playbooks.run("playbooks/status.yml", json_report=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return {
        host: result["msg"]
        for play in playbooks.report(run)["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Report"
        for host, result in task["hosts"].items()
    }


def test_every_host_says_what_it_serves(reports):
    assert sorted(reports) == ["cache1", "data1", "lb1", "lb2", "registry1", "registry2"]
    for host in ("registry1", "registry2"):
        serves = reports[host]["serves"]
        for name, port in (("a", 8081), ("b", 8082)):
            assert f"registry instance {name} :{port} version 1.0.0 ready" in serves, serves
    assert re.match(r"redis :6379 version 7\.\S+ ready$", reports["cache1"]["serves"][0])
    assert re.match(r"postgresql :5432 version \d+\.\d+.* ready$", reports["data1"]["serves"][0])
    for host in ("lb1", "lb2"):
        assert "backend servers UP 4/4" in reports[host]["serves"][0], reports[host]


def test_the_db_host_shows_the_last_backup(reports):
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(0\.\d h ago\)"
    lines = reports["data1"]["last_backup"]
    assert any(re.match(rf"schema_registry: {when}$", line) for line in lines), lines
