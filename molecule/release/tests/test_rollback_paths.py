"""Which way rollback.yml switches a host, on the lab after the release story (every
host on 1.0.0; 2.0.0 installed, rolled back from).

1. A rollback to the release the hosts serve changes nothing, HAProxy included.
2. Both registry hosts UP in HAProxy: each host goes whole (both instances drained in
   one task, switched in one), to 2.0.0 and back to 1.0.0.
3. The other host's servers in maintenance: the host goes instance by instance (it
   keeps serving); the whole-host drain changes nothing in HAProxy.
Each test leaves every host on 1.0.0, as the story did.
"""

from __future__ import annotations

import json
import time

import pytest

# Plays run from the controller; lb1 runs them once and holds the socket.
testinfra_hosts = ["lb1"]

SOCKET = "/run/haproxy/admin.sock"
BACKEND = "schema_registry"
PLAN_PLAY = "Find the release each host goes back to"
SWITCH_PLAY = "Switch the registry hosts back"
HOST_DRAIN = "Take the whole host out of HAProxy if another host's server is UP"
HOST_CHECK = "Remember whether the host needs the rollback"
HOST_SWITCH = "Pin, restart and wait until they serve"
INSTANCE_DRAIN = "Take the instance out of every HAProxy and let its requests finish"
ALL_SERVERS = {"registry1_a", "registry1_b", "registry2_a", "registry2_b"}


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


def settled_statuses(host, servers: set[str], timeout: float = 15.0) -> dict[str, str]:
    """Statuses once the servers are plain UP, or as they are after the timeout. A check
    that failed while an instance restarted (drained) leaves HAProxy saying "UP 1/2"
    until its next check passes: that server is UP and serving; a second failure would
    take it DOWN, which this waits long enough to see."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = server_statuses(host)
        if all(statuses.get(s) == "UP" for s in servers) or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def results(report: dict, task_name: str, play_name: str = SWITCH_PLAY) -> dict[str, list[dict]]:
    """Every result of the task whose name starts so in the named play, per host."""
    found: dict[str, list[dict]] = {}
    for play in report.get("plays", []):
        if play["play"]["name"] != play_name:
            continue
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ")[-1].startswith(task_name):
                for name, result in task["hosts"].items():
                    found.setdefault(name, []).append(result)
    return found


def rollback(playbooks, version: str | None, *limit: str) -> dict:
    """rollback.yml to the version, or with none to the previous release (README's
    `ansible-playbook playbooks/rollback.yml`)."""
    named = ["-e", f"version={version}"] if version else []
    run = playbooks.run("playbooks/rollback.yml", *named, *limit, json_report=True)
    report = playbooks.report(run)
    assert run.returncode == 0, run.stderr[-2000:]
    return report


def needed(report: dict) -> dict[str, bool]:
    """Per host: did the check find the rollback needed."""
    return {
        name: result["ansible_facts"]["__schema_registry_rollback_needed"]
        for name, (result,) in results(report, HOST_CHECK, PLAN_PLAY).items()
    }


def test_a_rollback_to_the_release_the_hosts_serve_changes_nothing(playbooks, host):
    report = rollback(playbooks, "1.0.0")
    assert needed(report) == {"registry1": False, "registry2": False}
    for name, drains in results(report, HOST_DRAIN).items():
        assert all(drain.get("skipped") for drain in drains), (name, drains)
    for name, (check,) in results(report, HOST_SWITCH, PLAN_PLAY).items():
        # the check (check mode): nothing would restart, `current` is there already
        assert not check["changed"] and check["restarted"] == [], (name, check)
    for name, switches in results(report, HOST_SWITCH).items():
        assert all(switch.get("skipped") for switch in switches), (name, switches)
    assert playbooks.changed_tasks(report) == []
    statuses = settled_statuses(host, ALL_SERVERS)
    assert set(statuses.values()) == {"UP"}, statuses


def test_with_both_hosts_up_each_host_switches_whole(playbooks, host):
    # Back to 1.0.0 with no version: the previous release, as the README gives it.
    for version, back_from, named in (("2.0.0", "1.0.0", True), ("1.0.0", "2.0.0", False)):
        report = rollback(playbooks, version if named else None)
        assert needed(report) == {"registry1": True, "registry2": True}, version
        drains = results(report, HOST_DRAIN)
        assert set(drains) == {"registry1", "registry2"}
        for name, (drain,) in drains.items():
            other = "registry2" if name == "registry1" else "registry1"
            assert drain["acted"], drain
            assert drain["others_up"] == [f"{other}_a", f"{other}_b"], drain
        for name, (switch,) in results(report, HOST_SWITCH).items():
            assert switch["changed"] and sorted(switch["restarted"]) == ["a", "b"], (name, switch)
            assert switch["current"]["active"] == version, (name, switch)
            assert switch["current"]["rolled_back_from"] == back_from, (name, switch)
        assert results(report, INSTANCE_DRAIN) == {}
        statuses = settled_statuses(host, ALL_SERVERS)
        assert set(statuses.values()) == {"UP"}, statuses


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
    for version in ("2.0.0", "1.0.0"):
        report = rollback(playbooks, version, "--limit", "registry1")
        assert needed(report) == {"registry1": True}, version
        (drain,) = results(report, HOST_DRAIN)["registry1"]
        assert not drain["acted"] and not drain["changed"] and drain["others_up"] == [], drain
        per_instance = results(report, INSTANCE_DRAIN)["registry1"]
        assert len(per_instance) == 2, json.dumps(per_instance)[:2000]
        statuses = settled_statuses(host, {"registry1_a", "registry1_b"})
        assert statuses["registry1_a"] == "UP" and statuses["registry1_b"] == "UP", statuses
