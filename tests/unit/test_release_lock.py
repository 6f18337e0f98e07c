"""The run lock of release.yml/rollback.yml (issue 18), with real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_release_lib import COLLECTIONS, ReleaseError, release_lock, run_module

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture(name="holder_proc")
def holder_proc_fixture():
    proc = subprocess.Popen(SLEEPER)
    yield proc
    proc.kill()
    proc.wait()


def test_second_run_is_refused_naming_the_holder(tmp_path: Path, holder_proc) -> None:
    first = release_lock.describe_controller("release.yml", pid=holder_proc.pid)
    lock = release_lock.RunLock(str(tmp_path))
    assert lock.acquire(first)["changed"]
    before = (tmp_path / "run-lock.json").read_bytes()
    second = release_lock.describe_controller("rollback.yml", pid=1)
    with pytest.raises(release_lock.RunLockHeldError) as info:
        lock.acquire(second, steal=(release_lock.holder_is_dead(first) and [first["run_id"]]) or [])
    message = str(info.value)
    for part in ("release.yml", first["run_id"], f"pid {holder_proc.pid}", first["controller"]):
        assert part in message
    assert f"force_unlock={first['run_id']}" in message
    assert (tmp_path / "run-lock.json").read_bytes() == before
    # The same run again is no change; another run's release leaves it alone.
    assert not lock.acquire(first)["changed"]
    assert not lock.release(second["run_id"])["changed"]
    assert lock.holder()["run_id"] == first["run_id"]
    assert lock.release(first["run_id"])["changed"] and lock.holder() is None


def test_dead_holder_on_this_controller_is_provably_dead(tmp_path: Path) -> None:
    proc = subprocess.Popen(SLEEPER)
    holder = release_lock.describe_controller("release.yml", pid=proc.pid)
    assert not release_lock.holder_is_dead(holder)
    proc.kill()
    proc.wait()
    assert release_lock.holder_is_dead(holder)
    # A reused pid (another start time) is dead too; another machine never is.
    assert release_lock.holder_is_dead({**holder, "pid": 1, "pid_start": "0"})
    assert not release_lock.holder_is_dead({**holder, "machine_id": "0" * 32})
    assert not release_lock.holder_is_dead({**holder, "controller": "elsewhere"})
    lock = release_lock.RunLock(str(tmp_path))
    lock.acquire(holder)
    me = release_lock.describe_controller("rollback.yml", pid=1)
    result = lock.acquire(me, steal=[holder["run_id"]])
    assert result["replaced"]["run_id"] == holder["run_id"]
    assert lock.holder()["playbook"] == "rollback.yml"


def test_check_mode_and_bad_holder_change_nothing(tmp_path: Path) -> None:
    lock = release_lock.RunLock(str(tmp_path / "tree"))
    me = release_lock.describe_controller("release.yml", pid=1)
    assert lock.acquire(me, check_mode=True)["changed"]
    assert not (tmp_path / "tree").exists()
    with pytest.raises(ReleaseError, match="holder lacks"):
        lock.acquire({"run_id": "x"})
    assert not (tmp_path / "tree").exists()


def test_playbook_process_is_the_main_process_above_its_workers(tmp_path: Path) -> None:
    # main (named ansible-playbook) -> forked worker (same command line) -> a shell ->
    # the module: the lookup lands on main, not on the worker.
    script = tmp_path / "chain.py"
    out = tmp_path / "found.json"
    script.write_text(
        "import os, subprocess, sys, json\n"
        f"sys.path.insert(0, {str(COLLECTIONS)!r})\n"
        "if os.fork() == 0:\n"
        "    code = ('import json,sys; sys.path.insert(0, sys.argv[1]);'\n"
        "            'from ansible_collections.llmops.registry.plugins.module_utils'\n"
        "            ' import release_lock as r;'\n"
        "            'print(json.dumps(r.playbook_process()))')\n"
        "    shell = ['sh', '-c', 'exec \"$0\" -c \"$1\" \"$2\"', sys.executable, code]\n"
        f"    found = subprocess.run(shell + [{str(COLLECTIONS)!r}],\n"
        "                           capture_output=True, text=True).stdout\n"
        f"    open({str(out)!r}, 'w').write(found)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print(os.getpid())\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), "ansible-playbook", "release.yml"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.read_text()) == int(proc.stdout.strip())


def test_module_refuses_with_the_holder_and_reports_dead_holders(tmp_path: Path) -> None:
    proc = subprocess.Popen(SLEEPER)
    alive = release_lock.describe_controller("release.yml", pid=proc.pid)
    try:
        first = run_module(
            "release_lock", {"state": "acquired", "path": str(tmp_path), "holder": alive}
        )
        assert first["changed"] and not first.get("failed")
        other = {**alive, "run_id": "other-run", "playbook": "rollback.yml"}
        refused = run_module(
            "release_lock", {"state": "acquired", "path": str(tmp_path), "holder": other}
        )
        assert refused["failed"] and alive["run_id"] in refused["msg"]
        judged = run_module("release_lock", {"state": "controller", "holders": [alive]})
        # Not run under ansible-playbook: the module says so instead of guessing.
        assert judged["failed"] and "ansible-playbook" in judged["msg"]
    finally:
        proc.kill()
        proc.wait()
