"""Process control: pid identity, descendants, signals, and the nspawn processes
that are the lab's hosts (start, stop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import labpaths
from labcore import LabError
from labsys import log

STOP_TIMEOUT = 20.0


def process_start_time(pid: int) -> str | None:
    """Start time of a live pid (clock ticks since boot), to tell a reused pid apart.

    None when the process is gone or a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_start_time(stat)


def parse_start_time(stat: str) -> str | None:
    # The command name (field 2) may hold spaces and ')', so split after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    state, start_time = fields[0], fields[19]
    return None if state in ("Z", "X") else start_time


def host_alive(host: dict[str, Any]) -> bool:
    pid = host.get("pid")
    if not pid:
        return False
    return process_start_time(pid) == host.get("pid_start")


def descendants(pid: int) -> list[int]:
    """Every process below pid (the container's init and all it runs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ppid = pid_parent(int(entry.name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pid_parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


# A process is named by (pid, start time): a pid alone may have been reused.
Proc = tuple[int, str]


def identify(pids: list[int]) -> list[Proc]:
    return [(pid, start) for pid in pids if (start := process_start_time(pid)) is not None]


def still_running(procs: list[Proc]) -> list[Proc]:
    return [proc for proc in procs if process_start_time(proc[0]) == proc[1]]


def send_signal(procs: list[Proc], signum: int) -> None:
    for pid, _unused in still_running(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    deadline = time.monotonic() + timeout
    alive = still_running(procs)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = still_running(alive)
    return alive


def nspawn_command(state: dict[str, Any], host: dict[str, Any]) -> list[str]:
    upper = Path(host["upper"])
    return [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",  # the build machine's PID 1 is not systemd
        "--keep-unit",
        f"--machine={host['machine']}",
        f"--hostname={host['name']}",
        f"--uuid={host['machine_id']}",
        f"--directory={labpaths.BASE_DIR}",
        f"--overlay={labpaths.BASE_DIR}:{upper}:/",
        f"--network-bridge={state['bridge']}",
        f"--bind={host['apt_cache']}/archives:/var/cache/apt/archives",
        f"--bind={host['apt_cache']}/lists:/var/lib/apt/lists",
        "--resolv-conf=off",  # the upper dir holds a copy of the build machine's resolver
        "--timezone=off",
        "--link-journal=no",  # keep the host's journal out of the build machine's /var/log
        "--console=read-only",
    ]


def start_host(state: dict[str, Any], host: dict[str, Any]) -> None:
    logfile = Path(host["log"])
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            nspawn_command(state, host),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives labctl and its terminal
        )
    host["pid"] = proc.pid
    host["pid_start"] = process_start_time(proc.pid)


def stop_hosts(state: dict[str, Any]) -> None:
    """Power off every host (SIGTERM asks nspawn for a clean shutdown), then kill leftovers."""
    leaders = [(host["pid"], host["pid_start"]) for host in state["hosts"] if host_alive(host)]
    send_signal(leaders, signal.SIGTERM)
    left = wait_gone(leaders, STOP_TIMEOUT)
    if not left:
        return  # when nspawn ends, its container's PID namespace goes with it
    log(f"lab {state['lab']}: {len(left)} host(s) ignored the poweroff, killing them")
    victims = left + identify([child for pid, _unused in left for child in descendants(pid)])
    send_signal(victims, signal.SIGKILL)
    still = wait_gone(victims, 5)
    if still:
        raise LabError(
            f"processes {[pid for pid, _unused in still]} of lab {state['lab']} would not die"
        )


def nspawn_processes() -> list[tuple[int, str]]:
    """(pid, machine name) of every systemd-nspawn running on our base rootfs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [arg.decode(errors="replace") for arg in argv]
        if not args or not args[0].endswith("systemd-nspawn"):
            continue
        if f"--directory={labpaths.BASE_DIR}" not in args:
            continue
        machine = next((a.split("=", 1)[1] for a in args if a.startswith("--machine=")), "")
        found.append((int(entry.name), machine))
    return found
