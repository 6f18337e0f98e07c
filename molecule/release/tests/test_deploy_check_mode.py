"""playbooks/deploy.yml --check on the converged lab reports no change.

side_effect runs it first, on the lab exactly as converge left it, and keeps the json
callback's report (the real deploy after the release story is checked in
test_release_story.py). The scenario converges the data stores, the load
balancer and the registry, not the base role nor the exporters (other scenarios cover
them): those roles' tags are skipped, every other task of deploy.yml runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Reads files on the controller; lb1 (one host) only makes the tests run once.
testinfra_hosts = ["lb1"]

WORK = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "release"


@pytest.fixture(scope="module")
def check_run():
    rc, _unused, stderr = (WORK / "deploy_check.rc").read_text().partition("\n")
    text = (WORK / "deploy_check.json").read_text()
    try:
        report = json.loads(text)
    except ValueError:
        pytest.fail(f"no JSON report (rc {rc}):\n{text[-3000:]}\n{stderr[-3000:]}")
    return int(rc), stderr, report


def test_check_mode_succeeds(check_run):
    rc, stderr, report = check_run
    failed = {host: stats for host, stats in report["stats"].items() if stats["failures"]}
    assert rc == 0 and not failed, (failed, stderr[-3000:])


def test_check_mode_reports_no_change(check_run, playbooks):
    _unused, _unused2, report = check_run
    assert playbooks.changed_tasks(report) == []
    assert {host: stats["changed"] for host, stats in report["stats"].items()} == dict.fromkeys(
        report["stats"], 0
    )


def test_check_mode_reached_every_converged_role(check_run):
    # A run that skipped everything would also report no change.
    _unused, _unused2, report = check_run
    roles = {
        task["task"]["name"].split(" : ")[0].rsplit(".", 1)[-1]
        for play in report["plays"]
        for task in play["tasks"]
        if " : " in task["task"]["name"]
    }
    assert {"postgresql", "redis", "loadbalancer", "schema_registry"} <= roles, roles
