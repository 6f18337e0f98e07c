"""Release and rollback with every group on hosts of its own (issue 18), under load
through the load balancer, counting what clients saw:

- release.yml builds 1.0.1 from the checkout only because -e build_artifact=true says
  so, and rolls it through both registry hosts: 0 failed requests;
- a rollback that fails mid-switch (the target release cannot start on registry2) ends
  the run naming the host, leaves registry1 switched, and gives the run lock back:
  the next run is not refused for the lock;
- a stale lock of a run that died on another controller refuses the next run naming
  it; -e force_unlock=<its run id> takes it over and the rollback completes;
The load runs from the first release to the end: 0 failed requests in all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from drill_load import Load, failure_counts, inventory_cafile
from lab_inventory import INVENTORY
from lab_inventory import host_vars as _vars
from lab_inventory import hosts as _hosts
from lab_inventory import node as _node

from playbooks import Playbooks

WORK = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "release-test"
NEW, OLD = "1.0.1", "1.0.0"
# A run that died on another controller: nothing on this one can prove it gone.
STALE_HOLDER = {
    "run_id": "ops2-4242-777",
    "playbook": "release.yml",
    "user": "alice",
    "controller": "ops2",
    "machine_id": "0" * 32,
    "boot_id": "b" * 32,
    "pid": 4242,
    "pid_start": "777",
    "started_at": "2026-12-06T03:00:00Z",
}


def _serves(host: str) -> list[str]:
    """The version each instance of the host reports on /ready (or its error)."""
    script = (
        "import json, urllib.request\n"
        "for port in (8081, 8082):\n"
        "    try:\n"
        "        url = f'http://127.0.0.1:{port}/ready'\n"
        "        body = urllib.request.urlopen(url, timeout=5).read()\n"
        "        print(json.loads(body).get('version'))\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    return _node(host).check_output("python3 -c %s", script).split()


def _run(*args: str):
    return Playbooks().run(*args)


def _ok(proc) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def load():
    WORK.mkdir(parents=True, exist_ok=True)
    lb = _vars(_hosts("lb")[0])["ansible_host"]
    key = _vars(_hosts("registry")[0])["vault_registry_api_keys"][0]["key"]
    running = Load(
        lb, WORK, "release", key, 900, rate=30, workers=3, cafile=inventory_cafile(INVENTORY)
    )
    yield running
    if running.proc.poll() is None:
        running.finish()


@pytest.fixture(scope="module")
def story(load) -> dict:
    """Every step of the story, in order; the tests below read what each step saw."""
    registry = _hosts("registry")
    last, first = registry[-1], registry[0]
    seen: dict = {}

    seen["release"] = _run(
        "playbooks/release.yml", "-e", f"version={NEW}", "-e", "build_artifact=true"
    )
    seen["after_release"] = {h: _serves(h) for h in registry}

    # The target release cannot start on the last host: its command is not executable.
    cli = f"/opt/schema-registry/releases/{OLD}/venv/bin/schema-registry"
    _node(last).run_expect([0], f"chmod 0644 {cli}")
    seen["broken_rollback"] = _run(
        "playbooks/rollback.yml", "-e", f"version={OLD}", "-e", "schema_registry_ready_timeout=20"
    )
    seen["after_broken"] = {h: _serves(h) for h in registry}
    seen["locks_after_broken"] = {
        h: _node(h).file("/opt/schema-registry/run-lock.json").exists for h in registry
    }
    _node(last).run_expect([0], f"chmod 0755 {cli}")

    # A run that died on another controller left its lock on every registry host.
    lock = "/opt/schema-registry/run-lock.json"
    for host in registry:
        _node(host).run_expect([0], f"printf '%%s' %s > {lock}", json.dumps(STALE_HOLDER))
    seen["refused"] = _run("playbooks/rollback.yml", "-e", f"version={OLD}")
    force = f"force_unlock={STALE_HOLDER['run_id']}"
    seen["forced"] = _run("playbooks/rollback.yml", "-e", f"version={OLD}", "-e", force)
    seen["after_rollback"] = {h: _serves(h) for h in registry}
    seen["first_host_current"] = _node(first).check_output("readlink /opt/schema-registry/current")

    seen["load"] = failure_counts(load.finish())
    return seen


def test_release_builds_on_request_and_rolls_through_every_host(story):
    _ok(story["release"])
    artifact = Path(_vars(_hosts("registry")[0])["schema_registry_artifact_dir"])
    assert (artifact / f"schema-registry-{NEW}.tar.gz").is_file()
    assert story["after_release"] == {h: [NEW, NEW] for h in _hosts("registry")}


def test_a_rollback_failing_mid_switch_names_the_host_and_gives_the_lock_back(story):
    first, last = _hosts("registry")[0], _hosts("registry")[-1]
    proc = story["broken_rollback"]
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert f"rollback to {OLD} failed on {last}" in output, output[-3000:]
    # The host before it was switched back; the broken one serves nothing.
    assert story["after_broken"][first] == [OLD, OLD]
    assert OLD not in story["after_broken"][last]
    assert story["locks_after_broken"] == {h: False for h in _hosts("registry")}


def test_a_stale_lock_is_refused_by_name_and_taken_over_with_force_unlock(story):
    refused = story["refused"]
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert f"force_unlock={STALE_HOLDER['run_id']}" in output, output[-3000:]
    assert "on controller ops2" in output
    _ok(story["forced"])
    assert story["after_rollback"] == {h: [OLD, OLD] for h in _hosts("registry")}
    assert story["first_host_current"].strip().endswith(f"releases/{OLD}")


def test_no_client_saw_a_failure(story):
    counts = story["load"]
    assert counts["requests"] > 500, counts
    assert counts["failed"] == 0, counts
