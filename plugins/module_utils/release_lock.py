# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""The run lock of release.yml and rollback.yml (issue 18).

The flock in releases.py covers one module call; this lock covers a whole run. Each
registry host holds ``<root>/run-lock.json`` naming the run that owns it::

    {"run_id": "...", "playbook": "release.yml", "user": "...", "controller": "...",
     "machine_id": "...", "boot_id": "...", "pid": 1234, "pid_start": "5678", "started_at": "..."}

A second run is refused at once, with the holder named. A holder is *provably dead*
when it ran on this controller (same host name and machine id) and its ansible-playbook
process is gone (the controller rebooted since, no such pid, or the pid now belongs to
a process that started at another time): its lock is taken over without asking. Any
other lock is only taken with ``force_unlock`` set to its run id (the refusal prints it).

Three steps, each one module call:
``controller`` (on the controller: who we are, which holders are dead),
``acquired`` and ``released`` (on every registry host).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

from ansible_collections.llmops.registry.plugins.module_utils.atomic_file import (
    write_atomically,
)
from ansible_collections.llmops.registry.plugins.module_utils.releases import (
    ReleaseError,
    current_user,
)

RUN_LOCK_FILE = "run-lock.json"
GUARD_FILE = ".run-lock.guard"
HOLDER_KEYS = ("run_id", "playbook", "user", "controller", "boot_id", "pid", "pid_start")


class RunLockHeldError(ReleaseError):
    """Another live (or not provably dead) run holds the run lock."""


# --------------------------------------------------------------------------- controller


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def machine_id() -> str:
    return (_read_text("/etc/machine-id") or "").strip()


def boot_id() -> str:
    return (_read_text("/proc/sys/kernel/random/boot_id") or "").strip()


def process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot, field 22 of /proc/PID/stat), or
    None when no such process exists."""
    stat = _read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _cmdline(pid: int) -> str:
    return (_read_text(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()


def _parent(pid: int) -> int:
    stat = _read_text(f"/proc/{pid}/stat") or ""
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else 0


def playbook_process(start: int | None = None) -> int:
    """pid of the ansible-playbook process this module runs under: the nearest ancestor
    whose command line names ansible-playbook, then up through the forked workers (same
    command line) to the main process. A nested ansible-playbook (a playbook that runs
    another) stops at the inner one. 0 when there is none."""
    pid = _parent(os.getpid()) if start is None else start
    while pid > 1 and "ansible-playbook" not in _cmdline(pid):
        pid = _parent(pid)
    if pid <= 1:
        return 0
    line = _cmdline(pid)
    while True:
        parent = _parent(pid)
        if parent <= 1 or _cmdline(parent) != line:
            return pid
        pid = parent


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_controller(playbook: str, pid: int | None = None) -> dict[str, Any]:
    """Holder record of the run this controller process belongs to."""
    pid = playbook_process() if pid is None else pid
    if pid <= 0:
        raise ReleaseError("no ansible-playbook process found above this module on the controller")
    start = process_start(pid) or ""
    controller = socket.gethostname()
    return {
        "run_id": f"{controller}-{pid}-{start}",
        "playbook": playbook,
        "user": current_user(),
        "controller": controller,
        "machine_id": machine_id(),
        "boot_id": boot_id(),
        "pid": pid,
        "pid_start": start,
        "started_at": now_iso(),
    }


def holder_is_dead(holder: dict[str, Any]) -> bool:
    """True only when the holder provably no longer runs: it ran on this controller in
    this boot and its process is gone (or the pid was reused). Unknown means alive."""
    if not isinstance(holder, dict):
        return False
    same_machine = holder.get("controller") == socket.gethostname() and bool(
        holder.get("machine_id")
    )
    # Another machine of the same name: nothing provable from here.
    if not same_machine or holder.get("machine_id") != machine_id():
        return False
    if holder.get("boot_id") != boot_id():
        return True  # this machine rebooted since: every process of that boot is gone
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    return process_start(pid) != str(holder.get("pid_start", ""))


def describe_holder(holder: dict[str, Any]) -> str:
    return (
        f"run {holder.get('run_id')} ({holder.get('playbook')} started {holder.get('started_at')}"
        f" by {holder.get('user')} on controller {holder.get('controller')},"
        f" pid {holder.get('pid')})"
    )


# --------------------------------------------------------------------------- hosts


class RunLock:
    def __init__(self, path: str) -> None:
        if not os.path.isabs(path):
            raise ReleaseError(f"path must be absolute, got {path!r}")
        self.path = os.path.normpath(path)
        self.file = os.path.join(self.path, RUN_LOCK_FILE)
        self.guard = os.path.join(self.path, GUARD_FILE)

    def holder(self) -> dict[str, Any] | None:
        text = _read_text(self.file)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            # Unreadable: treat as held by an unknown run (force_unlock=unknown frees it).
            return {"run_id": "unknown", "playbook": "?", "detail": text[:200]}
        return data if isinstance(data, dict) else {"run_id": "unknown"}

    @contextlib.contextmanager
    def _guarded(self, create: bool):
        if not create and not os.path.exists(self.guard):
            yield
            return
        os.makedirs(self.path, mode=0o755, exist_ok=True)
        fd = os.open(self.guard, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def acquire(
        self,
        me: dict[str, Any],
        steal: list[str] | None = None,
        check_mode: bool = False,
    ) -> dict[str, Any]:
        """Take the lock for ``me``. Refuses (RunLockHeldError) while another run holds
        it, unless its run id is in ``steal`` (dead holders, force_unlock)."""
        missing = [k for k in HOLDER_KEYS if k not in me]
        if missing:
            raise ReleaseError(f"holder lacks {', '.join(missing)}")
        with self._guarded(create=not check_mode):
            held = self.holder()
            if held and held.get("run_id") == me["run_id"]:
                return {"changed": False, "holder": held, "replaced": None}
            if held and held.get("run_id") not in (steal or []):
                raise RunLockHeldError(
                    f"another release or rollback holds the run lock {self.file}: "
                    f"{describe_holder(held)}. Wait for it to finish. If that run is gone"
                    f" (its controller crashed or was another machine), release the lock"
                    f" with -e force_unlock={held.get('run_id')}. Nothing was changed."
                )
            if not check_mode:
                write_atomically(
                    self.file, json.dumps(me, indent=2, sort_keys=True) + "\n", mode=0o644
                )
            return {"changed": True, "holder": me, "replaced": held}

    def release(self, run_id: str, check_mode: bool = False) -> dict[str, Any]:
        """Drop the lock if ``run_id`` holds it; anything else is left alone."""
        with self._guarded(create=False):
            held = self.holder()
            if not held or held.get("run_id") != run_id:
                return {"changed": False, "holder": held}
            if not check_mode:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.file)
            return {"changed": True, "holder": None}
