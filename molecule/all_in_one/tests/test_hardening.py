"""systemd hardening of every long-running unit of the stack (issue 15).

For each unit on the host (which units: from the host's groups): it is active, runs
with the roles' drop-in where one is ours, and its `systemd-analyze security` exposure
is at most its target. Targets are at least one step better than Debian's stock unit
(the stock score beside each); Redis's own unit is already strict (1.1) and must stay
there; the registry's own units stay at 1.5 or better. The scores are printed.
Then what the hardening must not break: the node exporter still reads PID 1's mount
table (a service-private one would report every filesystem read-only), the Go
exporters keep process_start_time_seconds, HAProxy runs as haproxy, and status.yml
prints each unit's score.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from monitoring_web import metrics_on

from playbooks import Playbooks

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
DROP_IN = "llmops-hardening.conf"

# unit, group whose hosts run it, our drop-in?, stock exposure (Debian 12), target.
# The monitoring stack's daemons read the TLS key through group ssl-cert, which a
# private user namespace drops: PrivateUsers=no costs them 0.1 (role monitoring_web).
UNITS = [
    ("postgresql@15-main.service", "db", True, 9.6, 1.4),
    ("redis-server.service", "cache", True, 1.1, 1.1),
    ("haproxy.service", "lb", True, 9.6, 1.4),
    ("prometheus.service", "monitoring", True, 3.9, 1.2),
    ("prometheus-alertmanager.service", "monitoring", True, 9.2, 1.2),
    ("prometheus-pushgateway.service", "monitoring", True, 9.2, 1.2),
    ("prometheus-node-exporter.service", "all", True, 9.2, 1.5),
    ("prometheus-postgres-exporter.service", "db", True, 9.2, 1.2),
    ("prometheus-redis-exporter.service", "cache", True, 9.2, 1.2),
    # The registry's own units (hardened in their unit files).
    ("schema-registry@a.service", "registry", False, None, 1.5),
    ("schema-registry@b.service", "registry", False, None, 1.5),
    ("alertmanager-inbox.service", "monitoring", False, None, 1.5),
]
CASES = [
    pytest.param(host, case, id=f"{host}-{case[0]}")
    for case in UNITS
    for host in RUNNER.get_hosts(case[1])
]
EXPORTERS = {"db": [9187], "cache": [9121], "monitoring": [9091, 9093, 9090]}


def _node(host: str):
    return testinfra.get_host(
        f"ansible://{host}?ansible_inventory={RUNNER.inventory_file}", sudo=True
    )


def _exposure(node, unit: str) -> float:
    report = node.check_output(f"systemd-analyze security --no-pager {unit}")
    last = report.strip().splitlines()[-1]
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", last)
    assert match, report
    return float(match.group(1))


@pytest.mark.parametrize(("host", "case"), CASES)
def test_unit_is_hardened_and_running(host, case, capsys):
    unit, _group, ours, stock, target = case
    node = _node(host)
    assert node.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    drop_ins = node.check_output(f"systemctl show -p DropInPaths --value {unit}")
    assert (DROP_IN in drop_ins) == ours, drop_ins
    score = _exposure(node, unit)
    with capsys.disabled():
        was = f"stock {stock}" if stock is not None else "own unit"
        print(f"\nexposure {host} {unit}: {score} ({was}, target <= {target})")
    assert score <= target
    if stock is not None and stock > 1.5:
        assert score < stock - 1


@pytest.mark.parametrize("host", RUNNER.get_hosts("all"))
def test_node_exporter_reports_the_hosts_mounts_not_its_own(host):
    node = _node(host)
    mounts = [line.split() for line in node.check_output("cat /proc/1/mounts").splitlines()]
    writable = {fields[1] for fields in mounts if "rw" in fields[3].split(",")}
    metrics = metrics_on(node, RUNNER.get_variables(host)["ansible_host"], 9100)
    pattern = r'^node_filesystem_readonly\{[^}]*mountpoint="([^"]+)"[^}]*\} (\d)$'
    found = re.findall(pattern, metrics, re.M)
    seen = [mount for mount, _flag in found]
    readonly = [mount for mount, flag in found if flag == "1"]
    assert seen, "no filesystem metrics"
    assert [m for m in readonly if m in writable] == []


@pytest.mark.parametrize("host", RUNNER.get_hosts("all"))
def test_hardened_go_daemons_keep_their_process_metrics(host):
    node = _node(host)
    groups = RUNNER.get_variables(host)["group_names"]
    ports = [9100] + [port for group in groups for port in EXPORTERS.get(group, [])]
    for port in ports:
        metrics = metrics_on(node, RUNNER.get_variables(host)["ansible_host"], port)
        assert re.search(r"^process_start_time_seconds \S+$", metrics, re.M), port


@pytest.mark.parametrize("host", RUNNER.get_hosts("lb"))
def test_haproxy_runs_as_haproxy_without_capabilities(host):
    node = _node(host)
    pid = node.check_output("systemctl show -p MainPID --value haproxy.service")
    assert node.check_output(f"ps -o user= -p {pid}") == "haproxy"
    caps = node.check_output(f"grep CapEff /proc/{pid}/status")
    assert caps.split()[1] == "0000000000000000", caps


def test_status_prints_the_exposure_of_every_unit():
    proc = Playbooks().run("playbooks/status.yml", json_report=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    messages = {
        host: result["msg"]
        for play in report["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Report"
        for host, result in task["hosts"].items()
    }
    for unit, group, _ours, _stock, _target in UNITS:
        for host in RUNNER.get_hosts(group):
            lines = messages[host]["exposure"]
            assert any(re.match(rf"{re.escape(unit)} \d+\.\d+ \w+$", line) for line in lines), lines
