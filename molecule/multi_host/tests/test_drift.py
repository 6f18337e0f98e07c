"""deploy.yml puts back what was changed by hand on the hosts.

Each role asks llmops.registry.state_probe once which of its packages, files and units
are already as wanted and skips only their tasks: drift in a file's content, mode or
group, or a stopped unit, must make the probe send the task in again. (test_converge_again.py
checks the other side: after a converge no probed task runs.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import Playbooks

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
