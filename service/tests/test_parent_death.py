"""Workers exit when `serve`'s main process dies (issue 18): no orphan holds the port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# parent -> worker: the worker arms exit_with_parent(parent pid) and writes its pid.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    time.sleep(120)
    """
)
WORKER = textwrap.dedent(
    """
    import os, sys, time
    from schema_registry.cli import exit_with_parent
    armed = exit_with_parent(os.getppid())
    open(sys.argv[1], "w").write(f"{os.getpid()} {armed}")
    time.sleep(120)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (it was reparented and not yet reaped).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_worker_exits_when_its_parent_is_killed_hard(tmp_path):
    marker = tmp_path / "worker.pid"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WORKER, str(marker)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid_text, armed = marker.read_text().split()
        worker = int(pid_text)
        assert armed == "True"
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_worker_of_an_already_dead_parent_exits_at_once(tmp_path):
    # exit_with_parent(pid of a process that is not our parent, as when the parent died
    # before the worker armed the signal): the signal comes at once.
    code = "from schema_registry.cli import exit_with_parent; import time\n"
    code += "exit_with_parent(1); time.sleep(30)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, timeout=20, check=False)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 15


def test_the_serving_process_itself_is_never_armed():
    sys.path.insert(0, str(SRC))
    from schema_registry.cli import exit_with_parent  # noqa: PLC0415

    assert exit_with_parent(os.getpid()) is False
    assert exit_with_parent(0) is False
