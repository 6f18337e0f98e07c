"""Which way rollback.yml switches a host, on the lab after the release story (1.0.0).

1. Both registry hosts UP in HAProxy: each host goes whole (both instances drained in
   one task, switched in one), and a rollback to the release the instances already
   serve restarts nothing.
2. The other host's servers in maintenance: the host goes instance by instance (it
   keeps serving); the whole-host drain changes nothing in HAProxy.
"""

from __future__ import annotations

import json

import pytest

# Plays run from the controller; "lb" (one host) runs them once and holds the socket.
testinfra_hosts = ["lb"]

SOCKET = "/run/haproxy/admin.sock"
BACKEND = "schema_registry"
SWITCH_PLAY = "Switch the registry hosts back"
HOST_DRAIN = "Take the whole host out of HAProxy if another host's server is UP"
HOST_SWITCH = "Pin, restart and wait until they serve"
INSTANCE_DRAIN = "Take the instance out of HAProxy and let its requests finish"


def lb_admin(host, command: str) -> str:
    """One command on HAProxy's admin socket (the lb has python3, not socat)."""
    script = (
        "import socket,sys;s=socket.socket(socket.AF_UNIX);"
        f"s.connect('{SOCKET}');s.sendall(sys.argv[1].encode()+b'\\n');"
        "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
    )
    return host.check_output(f'python3 -c "{script}" "{command}"')


def server_statuses(host) -> dict[str, str]:
    lines = lb_admin(host, "show stat").lstrip("# ").splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {
        r["svname"]: r["status"]
        for r in rows
        if r["pxname"] == BACKEND and r["svname"] not in {"FRONTEND", "BACKEND"}
    }


def results(report: dict, task_name: str) -> dict[str, list[dict]]:
    """Every result of the task whose name starts so in the switch play, per host."""
    found: dict[str, list[dict]] = {}
    for play in report.get("plays", []):
        if play["play"]["name"] != SWITCH_PLAY:
            continue
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ")[-1].startswith(task_name):
                for name, result in task["hosts"].items():
                    found.setdefault(name, []).append(result)
    return found


def test_with_both_hosts_up_each_host_switches_whole_and_restarts_nothing(playbooks, host):
    run = playbooks.run("playbooks/rollback.yml", "-e", "version=1.0.0", json_report=True)
    report = playbooks.report(run)
    assert run.returncode == 0, run.stderr[-2000:]
    drains = results(report, HOST_DRAIN)
    assert set(drains) == {"registry1", "registry2"}
    for name, (drain,) in drains.items():
        other = "registry2" if name == "registry1" else "registry1"
        assert drain["acted"], drain
        assert drain["others_up"] == [f"{other}_a", f"{other}_b"], drain
    for name, (switch,) in results(report, HOST_SWITCH).items():
        # Already on 1.0.0 after the story: nothing to restart, current already there.
        assert not switch["changed"] and switch["restarted"] == [], (name, switch)
        assert switch["current"]["active"] == "1.0.0", (name, switch)
    assert results(report, INSTANCE_DRAIN) == {}
    assert set(server_statuses(host).values()) == {"UP"}


@pytest.fixture
def registry2_in_maintenance(host):
    for instance in ("a", "b"):
        lb_admin(host, f"set server {BACKEND}/registry2_{instance} state maint")
    yield
    for instance in ("a", "b"):
        lb_admin(host, f"set server {BACKEND}/registry2_{instance} state ready")


def test_with_no_other_host_up_the_host_switches_instance_by_instance(
    playbooks, host, registry2_in_maintenance
):
    run = playbooks.run(
        "playbooks/rollback.yml", "-e", "version=1.0.0", "--limit", "registry1", json_report=True
    )
    report = playbooks.report(run)
    assert run.returncode == 0, run.stderr[-2000:]
    (drain,) = results(report, HOST_DRAIN)["registry1"]
    assert not drain["acted"] and not drain["changed"] and drain["others_up"] == [], drain
    per_instance = results(report, INSTANCE_DRAIN)["registry1"]
    assert len(per_instance) == 2, json.dumps(per_instance)[:2000]
    statuses = server_statuses(host)
    assert statuses["registry1_a"] == "UP" and statuses["registry1_b"] == "UP", statuses
