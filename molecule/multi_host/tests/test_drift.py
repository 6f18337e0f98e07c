"""deploy.yml puts back what was changed by hand, and a deploy that finds nothing to do
runs none of the tasks the roles' state probes can skip.

Each role asks llmops.registry.state_probe once which of its packages, files and units
are already as wanted and skips their tasks. These tests check both sides of that
bargain on real hosts: drift the probe must see is repaired, and after a converge every
probe proves everything in place (a probe entry that no longer describes its task
would make that task run on every no-op deploy).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import PROJECT, Playbooks

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")
POSTGRES_CONF = "/etc/postgresql/15/main/conf.d/50-llmops.conf"

# By hand, on the hosts: one change of each kind the probes compare.
DRIFT = {
    "data1": [
        "chmod 0644 /etc/redis/redis.conf",
        f"echo '# changed by hand' >> {POSTGRES_CONF}",
        "systemctl stop prometheus-node-exporter",
    ],
    "lb1": ["chgrp root /etc/haproxy/haproxy.cfg"],
    "registry1": [
        "echo 'CHANGED_BY_HAND=1' >> /etc/schema-registry/instance-a.env",
        "systemctl stop schema-registry@b",
    ],
}


def _host(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True)


def _gated_tasks() -> set[str]:
    """'llmops.registry.<role> : <task name>' of the tasks a state probe result can skip."""
    names = set()
    for path in (PROJECT / "roles").glob("*/tasks/*.yml"):
        role = path.parent.parent.name
        for task in yaml.safe_load(path.read_text()) or []:
            when = task.get("when", "")
            conditions = when if isinstance(when, list) else [when]
            if any("_probe." in str(condition) for condition in conditions):
                names.add(f"llmops.registry.{role} : {task['name']}")
    return names


@pytest.fixture(scope="module")
def playbooks() -> Playbooks:
    return Playbooks()


@pytest.fixture(scope="module")
def repair(playbooks):
    for host, commands in DRIFT.items():
        for command in commands:
            _host(host).run_expect([0], command)
    proc = playbooks.run("playbooks/deploy.yml", json_report=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return playbooks.report(proc)


def test_drift_is_put_back(repair):
    changed = " | ".join(Playbooks.changed_tasks(repair))
    for task in ("Write redis.conf", "Write the tuning and listen settings", "Write haproxy.cfg"):
        assert task in changed, changed
    data, lb, registry = _host("data1"), _host("lb1"), _host("registry1")
    assert data.file("/etc/redis/redis.conf").mode == 0o640
    assert "changed by hand" not in data.file(POSTGRES_CONF).content_string
    assert data.service("prometheus-node-exporter").is_running
    assert lb.file("/etc/haproxy/haproxy.cfg").group == "haproxy"
    pinned = registry.file("/etc/schema-registry/instance-a.env").content_string
    assert "CHANGED_BY_HAND" not in pinned
    assert registry.service("schema-registry@b").is_running


def test_a_deploy_with_nothing_to_do_skips_every_probed_task(repair, playbooks):
    proc = playbooks.run("playbooks/deploy.yml", json_report=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = playbooks.report(proc)
    assert Playbooks.changed_tasks(report) == []
    gated = _gated_tasks()
    assert len(gated) > 20  # the roles' probed tasks were found
    ran = [
        f"{host}: {task['task']['name']}"
        for play in report["plays"]
        for task in play["tasks"]
        if task["task"]["name"] in gated
        for host, result in task["hosts"].items()
        if not result.get("skipped")
    ]
    assert ran == [], "probe entries that do not match their task:\n" + "\n".join(ran)
